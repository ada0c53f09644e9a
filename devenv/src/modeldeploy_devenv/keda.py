"""KEDA's CRDs on a cluster: ``install_keda_crds`` applies the ``keda.sh`` CRDs of KEDA's published
module (ScaledObject, ScaledJob, TriggerAuthentication, ClusterTriggerAuthentication) and waits
until the API server serves them; ``uninstall_keda_crds`` removes them again, so a cluster shared
by several tests returns to "KEDA is not installed"."""

from __future__ import annotations

from modeldeploy_devenv.cluster import kubectl
from modeldeploy_devenv.custom_metrics_assets import require_keda_crds
from modeldeploy_devenv.polling import wait_until

KEDA_GROUP = "keda.sh"
ESTABLISH_TIMEOUT = "60s"


def install_keda_crds(kubeconfig: str) -> list[str]:
    """Apply KEDA's CRDs (fetched from its module the first time); return their ``crd/<name>``s."""
    applied = kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-o",
        "name",
        "-f",
        str(require_keda_crds()),
    )
    names = [f"crd/{line.split('/', 1)[1]}" for line in applied.stdout.split()]
    kubectl(kubeconfig, "wait", "--for=condition=Established", f"--timeout={ESTABLISH_TIMEOUT}", *names)
    return names


def uninstall_keda_crds(kubeconfig: str) -> None:
    """Delete KEDA's CRDs (and with them every KEDA object) and wait until the group is gone."""
    kubectl(kubeconfig, "delete", "--ignore-not-found", "--wait=true", "-f", str(require_keda_crds()))
    wait_until(
        f"the {KEDA_GROUP} API group to leave discovery",
        lambda: (
            not any(
                v.startswith(f"{KEDA_GROUP}/") for v in kubectl(kubeconfig, "api-versions").stdout.split()
            )
        ),
        timeout=60,
    )
