"""Unit tests of the pure parts: URI parsing, the key plan, drift, the cache, the queue, config."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import kopf
import pytest

from modeldeploy_operator.cli import parse_args
from modeldeploy_operator.config import ConfigError, OperatorConfig, config_from_env
from modeldeploy_operator.constants import OWNED_SELECTOR
from modeldeploy_operator.drift import contains, quantity_value
from modeldeploy_operator.handlers import OWNED, QUEUEING_IDLE_TIMEOUT_SECONDS, configure_settings
from modeldeploy_operator.image_policy import disallowed_image_message, image_allowed
from modeldeploy_operator.keyring import KeyPlan, plan_keys
from modeldeploy_operator.metrics import OperatorMetrics
from modeldeploy_operator.model import InvalidModelURIError, Scheme, parse_model_uri
from modeldeploy_operator.resources import CHILDREN, MODEL_DEPLOYMENT, SECRET, SERVICE, WATCHED, Role
from modeldeploy_operator.store import Store
from modeldeploy_operator.workqueue import WorkQueue
from modeldeploy_runtime.apikeys import HashedKey, KeyVerifier, mint_key
from tests.operator.factories import NOW, md

GRACE = timedelta(seconds=300)


@pytest.mark.parametrize(
    ("uri", "scheme", "path", "claim"),
    [
        ("s3://models/iris/3/model.joblib", Scheme.S3, "/model/model.joblib", None),
        ("https://example.com/a/b.skops?sig=1", Scheme.HTTPS, "/model/b.skops", None),
        # the same decoded name the fetcher writes (modeldeploy_runtime.artifact_uri)
        (
            "https://example.com/a/my%20model.joblib?X-Amz-Signature=x",
            Scheme.HTTPS,
            "/model/my model.joblib",
            None,
        ),
        ("pvc://models/iris/3/model.joblib", Scheme.PVC, "/mnt/models/iris/3/model.joblib", "models"),
        ("file:///opt/models/iris.joblib", Scheme.FILE, "/opt/models/iris.joblib", None),
    ],
)
def test_model_uri_maps_to_a_path_in_the_pod(uri: str, scheme: Scheme, path: str, claim: str | None) -> None:
    location = parse_model_uri(uri, model_dir="/model")
    assert (location.scheme, location.path_in_pod, location.claim) == (scheme, path, claim)
    assert location.remote == (scheme in (Scheme.S3, Scheme.HTTPS))


@pytest.mark.parametrize(
    "uri",
    [
        "gs://b/k",
        "s3://bucket/dir/",
        "pvc://claim",
        "pvc:///path",
        "http://x/y",
        "https://h/a/..%2F..%2Fevil",
    ],
)
def test_unsupported_uris_are_rejected_with_the_field_name(uri: str) -> None:
    with pytest.raises(InvalidModelURIError, match=r"spec\.model\.uri"):
        parse_model_uri(uri, model_dir="/model")


def test_spec_defaults_mirror_the_crd() -> None:
    spec = md(auth={}).spec
    assert (spec.replicas, spec.runtime.workers, spec.model.format) == (1, 1, "joblib")
    assert spec.auth.enabled is True
    assert spec.monitoring.service_monitor.enabled is True
    assert spec.monitoring.service_monitor.interval == "30s"


# -- allowedImages ---------------------------------------------------------------------------------
PATTERNS = ("registry.example/models/*", "registry.example/runtime:1.2", "*.internal/ml/*")


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("registry.example/models/runtime:3", True),
        ("registry.example/models/a/b@sha256:" + "0" * 64, True),
        ("registry.example/runtime:1.2", True),
        ("registry.example/runtime:1.2.3", False),  # no '*': exactly that image
        ("registry.example/modelsX/runtime:3", False),
        ("evil.example/registry.example/models/x:1", False),  # anchored at the start
        ("registry.example.evil.io/models/x:1", False),  # '.' is literal
        ("gpu.internal/ml/runtime:1", True),
    ],
)
def test_allowed_images_are_anchored_globs(image: str, allowed: bool) -> None:
    assert image_allowed(image, PATTERNS) is allowed


def test_an_empty_allow_list_allows_every_image_and_the_default_image_is_never_checked() -> None:
    assert image_allowed("anything:1", ())
    assert disallowed_image_message(md(), PATTERNS) is None  # no spec.runtime.image
    message = disallowed_image_message(md(runtime={"image": "evil:1"}), PATTERNS)
    assert message is not None
    assert message.startswith("spec.runtime.image 'evil:1' is not allowed")


def test_allowed_images_and_monitoring_namespace_are_read_from_the_environment() -> None:
    config = config_from_env(
        {"MODELDEPLOY_ALLOWED_IMAGES": " a/* , b:1,, ", "MODELDEPLOY_MONITORING_NAMESPACE": "prom"}
    )
    assert config.allowed_images == ("a/*", "b:1")
    assert config.monitoring_namespace == "prom"
    assert config_from_env({}).allowed_images == ()


# -- keys -------------------------------------------------------------------------------------------
def plan(
    clients: list[str],
    plaintexts: Mapping[str, str | None],
    hashes: Iterable[HashedKey],
    rotate: frozenset[str] = frozenset(),
    now: datetime = NOW,
    *,
    delivered: frozenset[str] | None = None,  # default: every client's Secret was delivered
) -> KeyPlan:
    return plan_keys(
        clients, plaintexts, hashes, rotate=rotate, now=now, grace=GRACE, mint=mint_key,
        delivered=frozenset(clients) if delivered is None else delivered,
    )  # fmt: skip


def test_a_key_never_delivered_is_replaced_at_once_not_kept_for_the_grace_period() -> None:
    """The hashes were written, then the leader died before the client Secret: nobody holds it."""
    undelivered = plan(["billing"], {}, []).hashes
    replanned = plan(["billing"], {"billing": None}, undelivered, delivered=frozenset())
    assert [key.client for key in replanned.hashes] == ["billing"]
    assert replanned.hashes[0].key_id != undelivered[0].key_id
    assert replanned.retired == ()


def test_first_plan_mints_one_key_per_client_and_stores_only_hashes() -> None:
    result = plan(["billing", "search"], {}, [])
    assert result.minted == ("billing", "search")
    verifier = KeyVerifier(result.hashes)
    assert verifier.verify(result.plaintexts["billing"], NOW) == "billing"
    assert all(result.plaintexts["billing"] not in str(h) for h in result.hashes)


def test_an_unchanged_key_set_plans_identical_hashes() -> None:
    first = plan(["billing"], {}, [])
    second = plan(["billing"], first.plaintexts, first.hashes)
    assert second.hashes == first.hashes
    assert second.plaintexts == first.plaintexts
    assert second.minted == ()


def test_rotation_keeps_the_old_key_valid_for_the_grace_period_then_drops_it() -> None:
    first = plan(["billing"], {}, [])
    old_key = first.plaintexts["billing"]
    rotated = plan(["billing"], first.plaintexts, first.hashes, rotate=frozenset({"billing"}))
    new_key = rotated.plaintexts["billing"]
    assert new_key != old_key
    assert rotated.minted == ("billing",)
    assert rotated.next_expiry == NOW + GRACE
    verifier = KeyVerifier(rotated.hashes)
    assert verifier.verify(old_key, NOW + timedelta(seconds=299)) == "billing"
    assert verifier.verify(old_key, NOW + GRACE) is None
    assert verifier.verify(new_key, NOW + timedelta(days=1)) == "billing"
    later = plan(["billing"], rotated.plaintexts, rotated.hashes, now=NOW + GRACE)
    assert len(later.hashes) == 1
    assert later.retired == (first.hashes[0].key_id,)
    assert later.next_expiry is None


def test_a_deleted_client_secret_issues_a_new_key_and_grace_for_the_old() -> None:
    first = plan(["billing"], {}, [])
    replaced = plan(["billing"], {"billing": None}, first.hashes)
    assert replaced.minted == ("billing",)
    assert {h.expires_at for h in replaced.hashes} == {None, NOW + GRACE}


def test_a_lost_hashes_file_is_rebuilt_from_the_client_secrets_without_a_new_key() -> None:
    first = plan(["billing"], {}, [])
    rebuilt = plan(["billing"], first.plaintexts, [])
    assert rebuilt.minted == ()
    assert KeyVerifier(rebuilt.hashes).verify(first.plaintexts["billing"], NOW) == "billing"


def test_removing_a_client_revokes_its_keys_at_once() -> None:
    first = plan(["billing", "search"], {}, [])
    after = plan(["billing"], first.plaintexts, first.hashes)
    assert {h.client for h in after.hashes} == {"billing"}
    assert after.next_expiry is None  # no grace period for a removed client
    verifier = KeyVerifier(after.hashes)
    assert verifier.verify(first.plaintexts["search"], NOW) is None
    assert verifier.verify(first.plaintexts["billing"], NOW) == "billing"


# -- drift ------------------------------------------------------------------------------------------
def test_contains_ignores_server_defaults_but_not_changed_or_missing_fields() -> None:
    desired = {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}
    observed = {
        "spec": {
            "containers": [
                {
                    "name": "a",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "imagePullPolicy": "Always",
                }
            ],
            "dnsPolicy": "ClusterFirst",
        }
    }
    assert contains(observed, desired)
    assert not contains({"spec": {"containers": []}}, desired)
    assert not contains({"spec": {"containers": [{"name": "b", "ports": [{"containerPort": 80}]}]}}, desired)


def test_quantities_compare_by_value_only_inside_resources() -> None:
    assert contains({"limits": {"cpu": "1"}}, {"limits": {"cpu": "1000m"}})
    assert contains({"requests": {"memory": "1Gi"}}, {"requests": {"memory": "1024Mi"}})
    assert not contains({"version": "1"}, {"version": "1000m"})
    assert quantity_value("1.5Gi") == quantity_value("1536Mi")
    assert quantity_value("abc") is None


# -- cache ------------------------------------------------------------------------------------------
def _obj(name: str, rv: str, owner: str = "iris") -> dict[str, object]:
    labels = {"modeldeploy.io/model-deployment": owner}
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "resourceVersion": rv,
            "labels": labels,
            "managedFields": [{}],
        }
    }


def test_store_keeps_the_newest_version_and_indexes_children_by_owner() -> None:
    store = Store()
    assert store.put(SECRET, _obj("iris-apikeys", "10"))
    assert not store.put(SECRET, _obj("iris-apikeys", "9"))
    assert not store.put(SECRET, _obj("iris-apikeys", "10"))  # the echo of a version already held
    assert store.get(SECRET, "ml", "iris-apikeys")["metadata"]["resourceVersion"] == "10"  # type: ignore[index]
    assert "managedFields" not in store.get(SECRET, "ml", "iris-apikeys")["metadata"]  # type: ignore[index]
    store.put(SECRET, _obj("other", "11", owner="other"))
    assert [s["metadata"]["name"] for s in store.owned(SECRET, "ml", "iris")] == ["iris-apikeys"]
    assert store.count(SECRET) == 2
    store.replace(SECRET, ["ml"], [_obj("other", "12", owner="other")], list_version=12)
    assert store.get(SECRET, "ml", "iris-apikeys") is None
    assert store.owned(SECRET, "ml", "iris") == []
    assert (store.count(SECRET), store.count(SERVICE)) == (1, 0)


# -- queue ------------------------------------------------------------------------------------------
def test_work_queue_deduplicates_delays_and_reruns_keys_added_while_processing() -> None:
    async def scenario() -> list[tuple[str, str]]:
        queue = WorkQueue()
        seen = []
        queue.add(("ml", "a"))
        queue.add(("ml", "a"))
        queue.add(("ml", "b"), delay=0.05)
        key = await queue.get()
        seen.append(key)
        queue.add(key)  # while processing: runs again after done()
        queue.done(key)
        for _ in range(2):
            key = await asyncio.wait_for(queue.get(), 1)
            seen.append(key)
            queue.done(key)
        assert len(queue) == 0
        return seen

    assert asyncio.run(scenario()) == [("ml", "a"), ("ml", "a"), ("ml", "b")]


# -- config and flags -------------------------------------------------------------------------------
def test_config_from_env_and_flags() -> None:
    config = config_from_env(
        {"MODELDEPLOY_RUNTIME_IMAGE": "img:1", "MODELDEPLOY_KEY_ROTATION_GRACE_SECONDS": "60"}
    )
    assert (config.runtime_image, config.key_rotation_grace_seconds, config.all_namespaces) == (
        "img:1",
        60,
        True,
    )
    scoped, _ = parse_args(
        ["--namespace", "a", "-n", "b", "--metrics-port", "0", "--log-format", "json"], config
    )
    assert (scoped.namespaces, scoped.all_namespaces, scoped.metrics_port, scoped.log_format) == (
        ("a", "b"),
        False,
        0,
        "json",
    )
    everything, _ = parse_args(["--all-namespaces"], OperatorConfig(namespaces=("x",), all_namespaces=False))
    assert everything.all_namespaces
    assert everything.namespaces == ()
    with pytest.raises(ConfigError, match="MODELDEPLOY_KEY_ROTATION_GRACE_SECONDS"):
        config_from_env({"MODELDEPLOY_KEY_ROTATION_GRACE_SECONDS": "soon"})
    with pytest.raises(SystemExit):
        parse_args(["--namespace", "a", "--all-namespaces"], config)


def test_the_children_are_watched_through_a_server_side_label_selector() -> None:
    settings = kopf.OperatorSettings()
    configure_settings(settings, OperatorConfig())
    assert {child.kind for child in CHILDREN} == {
        "Deployment",
        "Service",
        "Secret",
        "ServiceMonitor",
        "NetworkPolicy",
        "Certificate",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "HTTPRoute",
    }
    for child in CHILDREN:
        resource = kopf.Resource(child.group, child.version, child.plural)
        assert settings.watching.label_selectors.collect(resource) == [OWNED_SELECTOR]
    model_deployments = kopf.Resource(
        MODEL_DEPLOYMENT.group, MODEL_DEPLOYMENT.version, MODEL_DEPLOYMENT.plural
    )
    assert settings.watching.label_selectors.collect(model_deployments) == []


def test_kopf_lets_an_idle_object_worker_go_soon() -> None:
    """A burst of new objects must not keep a kopf worker and queue per object for 5 s."""
    settings = kopf.OperatorSettings()
    configure_settings(settings, OperatorConfig())
    assert (
        settings.queueing.idle_timeout
        == QUEUEING_IDLE_TIMEOUT_SECONDS
        < kopf.OperatorSettings().queueing.idle_timeout
    )


def test_kopf_watches_every_row_of_the_resource_table_and_only_those() -> None:
    watched = {}
    for handler in kopf.get_default_registry()._watching.get_all_handlers():
        assert handler.selector is not None
        watched[(handler.selector.group, handler.selector.version, handler.id)] = handler.labels
    assert watched == {
        (resource.group, resource.version, resource.kind): (None if resource.role is Role.PRIMARY else OWNED)
        for resource in WATCHED
    }
    assert {resource.kind for resource in WATCHED} == {"ModelDeployment"} | {child.kind for child in CHILDREN}


def test_store_does_not_bring_back_an_object_deleted_while_a_list_was_in_flight() -> None:
    store = Store()
    store.put(SERVICE, _obj("iris", "10"))
    listed = [_obj("iris", "10")]  # answered before the deletion
    store.remove(SERVICE, "ml", "iris", deleted_at=15)  # the watch's DELETED event
    store.replace(SERVICE, ["ml"], listed, list_version=12)
    assert store.get(SERVICE, "ml", "iris") is None  # the reconcile will create it again
    assert store.put(SERVICE, _obj("iris", "16"))  # created again: newer than the deletion
    store.replace(SERVICE, ["ml"], [_obj("iris", "16")], list_version=20)
    assert store.get(SERVICE, "ml", "iris")["metadata"]["resourceVersion"] == "16"  # type: ignore[index]


def test_an_empty_environment_gives_the_defaults_of_the_settings() -> None:
    assert config_from_env({}) == OperatorConfig(all_namespaces=True)


def test_the_ready_gauge_follows_each_cached_model_deployments_ready_condition() -> None:
    metrics = OperatorMetrics()
    ready = {
        "metadata": {"namespace": "ml", "name": "a"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    not_ready = {
        "metadata": {"namespace": "ml", "name": "b"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }
    metrics.watch_readiness(lambda: [ready, not_ready, {"metadata": {"namespace": "ml", "name": "c"}}])
    gauge = "modeldeploy_operator_modeldeployment_ready"
    samples = {
        name: metrics.registry.get_sample_value(gauge, {"namespace": "ml", "name": name}) for name in "abc"
    }
    assert samples == {"a": 1.0, "b": 0.0, "c": 0.0}
