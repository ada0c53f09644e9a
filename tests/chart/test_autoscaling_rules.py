"""The prometheus-adapter rules the chart ships: they expose, per pod, exactly the metric names the
operator's HPAs ask for (the real adapter loads this file in tests/node/test_autoscaling_inflight.py)."""

from __future__ import annotations

import re

import yaml

from modeldeploy_operator.constants import METRIC_INFLIGHT_REQUESTS, METRIC_REQUESTS_PER_SECOND
from tests.conftest import REPO_ROOT

RULES_FILE = REPO_ROOT / "charts" / "modeldeploy" / "autoscaling" / "prometheus-adapter-rules.yaml"


def test_the_rules_expose_the_operators_metric_names_per_pod() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())["rules"]
    exposed = {rule["name"]["as"] for rule in rules}
    assert exposed == {METRIC_INFLIGHT_REQUESTS, METRIC_REQUESTS_PER_SECOND}
    for rule in rules:
        assert rule["resources"]["overrides"] == {
            "namespace": {"resource": "namespace"},
            "pod": {"resource": "pod"},
        }
        series = re.match(r"^(\w+)\{", rule["seriesQuery"])
        assert series is not None, rule["seriesQuery"]
        assert re.search(rule["name"]["matches"], series.group(1)), rule
