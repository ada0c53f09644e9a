"""Names shared by every module of the operator: the API, labels, annotations, conditions, ports.

Defined once here and imported everywhere else, so a rename is one edit.
"""

from __future__ import annotations

from typing import Final

# The ModelDeployment API.
GROUP: Final = "modeldeploy.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "ModelDeployment"
PLURAL: Final = "modeldeployments"

FIELD_MANAGER: Final = "modeldeploy-operator"
OPERATOR_NAME: Final = "modeldeploy-operator"

# Labels (app.kubernetes.io/* recommended labels plus our owner label).
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_VERSION: Final = "app.kubernetes.io/version"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_MODEL_DEPLOYMENT: Final = f"{GROUP}/model-deployment"
LABEL_CLIENT: Final = f"{GROUP}/client"
LABEL_NAMESPACE_NAME: Final = "kubernetes.io/metadata.name"  # set by the API server on every namespace
# Every child the operator manages carries both labels; its watches and re-lists select on them.
OWNED_SELECTOR: Final = f"{LABEL_MANAGED_BY}={OPERATOR_NAME},{LABEL_MODEL_DEPLOYMENT}"

APP_NAME: Final = "modeldeploy-runtime"
PART_OF: Final = "modeldeploy"
COMPONENT_SERVER: Final = "model-server"
COMPONENT_API_KEYS: Final = "api-keys"
COMPONENT_CLIENT_KEY: Final = "client-key"

# Annotations.
ANNOTATION_MODEL_VERSION: Final = f"{GROUP}/model-version"
ANNOTATION_MODEL_SHA256: Final = f"{GROUP}/model-sha256"
ANNOTATION_DESIRED_HASH: Final = f"{GROUP}/desired-hash"
ANNOTATION_ROTATE: Final = f"{GROUP}/rotate"
KOPF_ANNOTATION_PREFIX: Final = GROUP

# Condition types.
CONDITION_READY: Final = "Ready"
CONDITION_PROGRESSING: Final = "Progressing"
CONDITION_DEGRADED: Final = "Degraded"
CONDITION_MONITORING: Final = "Monitoring"
CONDITION_AUTOSCALING: Final = "Autoscaling"  # present only while spec.autoscaling.enabled

# Condition reasons (CamelCase).
REASON_ROLLED_OUT: Final = "RolledOut"
REASON_ROLLING_OUT: Final = "RollingOut"
REASON_DEPLOYMENT_PENDING: Final = "DeploymentPending"
REASON_SCALED_TO_ZERO: Final = "ScaledToZero"
REASON_AS_EXPECTED: Final = "AsExpected"
REASON_CRASH_LOOP: Final = "CrashLoopBackOff"
REASON_CONTAINER_FAILING: Final = "ContainerFailing"
REASON_IMAGE_PULL: Final = "ImagePullFailed"
REASON_PROGRESS_DEADLINE: Final = "ProgressDeadlineExceeded"
REASON_REPLICA_FAILURE: Final = "ReplicaFailure"
REASON_SERVICE_MONITOR_APPLIED: Final = "ServiceMonitorApplied"
REASON_SERVICE_MONITOR_CRD_MISSING: Final = "ServiceMonitorCRDMissing"
REASON_MONITORING_DISABLED: Final = "Disabled"
REASON_IMAGE_NOT_ALLOWED: Final = "ImageNotAllowed"
REASON_NAME_CONFLICT: Final = "NameConflict"
REASON_AUTOSCALER_APPLIED: Final = "AutoscalerApplied"
REASON_AUTOSCALER_UNAVAILABLE: Final = "AutoscalerUnavailable"

# Event reasons (only meaningful transitions become Events).
EVENT_KEY_ROTATED: Final = "APIKeyRotated"
EVENT_KEY_EXPIRED: Final = "APIKeyRetired"
EVENT_MONITORING_SKIPPED: Final = "MonitoringSkipped"
EVENT_DEGRADED: Final = "Degraded"
EVENT_RECONCILE_FAILED: Final = "ReconcileFailed"

# Ports and paths of the runtime (its command line contract).
PORT_HTTP_NAME: Final = "http"
PORT_HTTPS_NAME: Final = "https"  # the serving port's name with spec.tls (same number)
PORT_HTTP: Final = 8080
PORT_METRICS_NAME: Final = "metrics"
PORT_METRICS: Final = 9090
PATH_LIVE: Final = "/v2/health/live"
PATH_READY: Final = "/v2/health/ready"
RUNTIME_EXECUTABLE: Final = "modeldeploy-runtime"

MODEL_DIR: Final = "/model"
PVC_MOUNT_DIR: Final = "/mnt/models"
TMP_DIR: Final = "/tmp"  # noqa: S108 - an emptyDir mount point inside the pod, not a host path
APIKEYS_DIR: Final = "/var/run/modeldeploy/apikeys"
APIKEYS_FILE_KEY: Final = "keys.json"
CLIENT_KEY_DATA_KEY: Final = "api-key"
TLS_DIR: Final = "/var/run/modeldeploy/tls"
TLS_CERT_KEY: Final = "tls.crt"  # the data keys of a kubernetes.io/tls Secret
TLS_KEY_KEY: Final = "tls.key"
ENV_TLS_CERT_FILE: Final = "MODELDEPLOY_TLS_CERT"  # the runtime's settings for HTTPS
ENV_TLS_KEY_FILE: Final = "MODELDEPLOY_TLS_KEY"

CONTAINER_RUNTIME: Final = "runtime"
CONTAINER_FETCH: Final = "fetch-model"
VOLUME_TMP: Final = "tmp"
VOLUME_MODEL: Final = "model"
VOLUME_PVC: Final = "model-pvc"
VOLUME_APIKEYS: Final = "apikeys"
VOLUME_TLS: Final = "tls"

RUNTIME_UID: Final = 65532

# Child name suffixes.
SUFFIX_APIKEYS: Final = "-apikeys"
SUFFIX_CLIENT: Final = "-client-"

# Autoscaling. The runtime's metrics (runtime/…/serving/metrics.py) as Prometheus stores them, and the
# names a custom-metrics adapter serves them under on custom.metrics.k8s.io, which the
# HorizontalPodAutoscaler's Pods metrics ask for (prometheus-adapter's rules ship with the chart:
# charts/modeldeploy/autoscaling/prometheus-adapter-rules.yaml). The KEDA ScaledObject queries
# Prometheus for the same series. One place, so the adapter's rule agrees.
METRIC_INFLIGHT_REQUESTS: Final = "modeldeploy_inflight_requests"  # gauge; the adapter keeps the name
METRIC_REQUESTS_TOTAL: Final = "modeldeploy_requests_total"  # counter, as Prometheus stores it
METRIC_REQUESTS_PER_SECOND: Final = "modeldeploy_requests_per_second"  # the adapter's rate of the counter
METRIC_RATE_WINDOW: Final = "1m"  # the rate() window of requests per second (adapter and KEDA alike)
METRIC_LABEL_MODEL: Final = "model"  # the runtime's label: --model-name, the ModelDeployment's name
METRIC_LABEL_NAMESPACE: Final = "namespace"  # added by the scrape (ServiceMonitor / pod discovery)
METRIC_LABEL_POD: Final = "pod"  # added by the scrape; the adapter maps it to the Pod resource
# While autoscaled, the operator's applies omit the Deployment's spec.replicas; this manager holds the
# field (at its current value) for the moment the operator lets go of it, so it is not reset to 1.
REPLICAS_HANDOVER_FIELD_MANAGER: Final = "modeldeploy-operator-replicas-handover"
# Canary rollouts (spec.rollout).
ANNOTATION_PROMOTE: Final = f"{GROUP}/promote"
ANNOTATION_ABORT: Final = f"{GROUP}/abort"
ANNOTATION_RETRY_ROLLOUT: Final = f"{GROUP}/retry-rollout"
LABEL_TRACK: Final = f"{GROUP}/track"
TRACK_CANARY: Final = "canary"
COMPONENT_CANARY: Final = "model-server-canary"  # canary pods behind their own Service (httpRoute)
SUFFIX_CANARY: Final = "-canary"
REASON_CANARY_ABORTED: Final = "CanaryAborted"
REASON_CANARY_IN_PROGRESS: Final = "CanaryInProgress"
EVENT_CANARY_PROMOTED: Final = "CanaryPromoted"
EVENT_CANARY_STEP: Final = "CanaryStep"
