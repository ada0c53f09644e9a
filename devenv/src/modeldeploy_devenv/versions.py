"""Pinned versions of the control-plane binaries; the binary cache is keyed by them."""

KUBERNETES_VERSION = "v1.37.2"
# The staging modules (k8s.io/api, k8s.io/client-go, ...) are published as v0.<minor>.<patch>.
KUBERNETES_STAGING_VERSION = "v0." + KUBERNETES_VERSION.removeprefix("v1.")
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
METRICS_SERVER_VERSION = "v0.9.0"  # built only for the real-node tier's autoscaling tests

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# The Gateway API's CRDs (HTTPRoute, for canary weights) come from its published Go module.
GATEWAY_API_VERSION = "v1.4.1"
# The custom-metrics path (built on demand by ``custom_metrics_assets``). Prometheus publishes its
# Go module as v0.<major><minor>.<patch>: v0.316.0 is Prometheus 3.16.0.
PROMETHEUS_VERSION = "v0.316.0"
PROMETHEUS_ADAPTER_VERSION = "v0.12.0"
KEDA_VERSION = "v2.21.0"
