"""Pure builders: (ModelDeployment, OperatorConfig) -> the desired child objects as dicts.

No I/O, no environment reads, no clock, no globals: the same input always gives the same output.
"""

from modeldeploy_operator.builders.autoscaling import build_horizontal_pod_autoscaler, build_scaled_object
from modeldeploy_operator.builders.certificate import build_certificate
from modeldeploy_operator.builders.deployment import build_deployment, runtime_containers
from modeldeploy_operator.builders.networkpolicy import build_network_policy
from modeldeploy_operator.builders.secrets import build_client_secret, build_hashes_secret
from modeldeploy_operator.builders.service import build_service
from modeldeploy_operator.builders.servicemonitor import build_service_monitor

__all__ = [
    "build_certificate",
    "build_client_secret",
    "build_deployment",
    "build_hashes_secret",
    "build_horizontal_pod_autoscaler",
    "build_network_policy",
    "build_scaled_object",
    "build_service",
    "build_service_monitor",
    "runtime_containers",
]
