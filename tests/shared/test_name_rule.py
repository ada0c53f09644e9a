"""One rule for model names and versions: the CRD's spec.model.version rule, used by every command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modeldeploy_runtime.package_layout import NAME_PATTERN, NAME_RULE, PackagingError, check_identifier
from modeldeploy_runtime.serving.settings import RuntimeSettings

CRD = Path(__file__).resolve().parents[2] / "crds" / "modeldeploy.io_modeldeployments.yaml"
SAMPLES = [
    "a",
    "iris",
    "1.0.0",
    "v1_rc-2",
    "A" * 63,
    "A" * 64,
    "a" * 128,
    "-a",
    "a-",
    ".a",
    "a.",
    "a b",
    "",
    "ä",
]


def _crd_version_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    version: dict[str, Any] = schema["properties"]["spec"]["properties"]["model"]["properties"]["version"]
    return version


def _crd_accepts(value: str) -> bool:
    schema = _crd_version_schema()
    [rule] = [item["rule"] for item in schema["x-kubernetes-validations"]]
    pattern = re.fullmatch(r"self\.matches\('(.+)'\)", rule)
    assert pattern is not None, rule
    return (
        schema["minLength"] <= len(value) <= schema["maxLength"] and re.search(pattern[1], value) is not None
    )


@pytest.mark.parametrize("value", SAMPLES)
def test_name_rule_accepts_exactly_what_the_crd_accepts(value: str) -> None:
    assert (NAME_PATTERN.fullmatch(value) is not None) == _crd_accepts(value)


@pytest.mark.parametrize("value", [value for value in SAMPLES if NAME_PATTERN.fullmatch(value)])
def test_serve_and_packaging_accept_a_valid_name(value: str) -> None:
    settings = RuntimeSettings.model_validate(
        {"model_uri": "/m.joblib", "model_name": value, "model_version": value}
    )
    assert (settings.model_name, settings.model_version) == (value, value)
    assert check_identifier("name", value) == value


@pytest.mark.parametrize("value", [value for value in SAMPLES if not NAME_PATTERN.fullmatch(value)])
@pytest.mark.parametrize("field", ["model_name", "model_version"])
def test_serve_and_packaging_refuse_an_invalid_name_the_same_way(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(NAME_RULE)):
        RuntimeSettings.model_validate({"model_uri": "/m.joblib", field: value})
    with pytest.raises(PackagingError, match=re.escape(NAME_RULE)):
        check_identifier("name", value)
