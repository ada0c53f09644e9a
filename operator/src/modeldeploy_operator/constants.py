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
# The runtime's metrics as prometheus-adapter serves them per pod (custom.metrics.k8s.io), under the
# rules of charts/modeldeploy/autoscaling/prometheus-adapter-rules.yaml: the names an HPA's Pods
# metric and a KEDA Prometheus trigger ask for.
METRIC_IN_FLIGHT_REQUESTS: Final = "modeldeploy_inflight_requests"
METRIC_REQUESTS_PER_SECOND: Final = "modeldeploy_requests_per_second"
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
