"""``make dev``: the product on the local control plane, end to end, in one terminal.

1. a local S3-compatible model store on loopback (moto's standalone server) holding the sample
   iris model, packaged with its metadata;
2. the CRDs and the sample ModelDeployment from ``examples/`` applied to the control plane;
3. the operator running in the foreground, its logs in this terminal;
4. once the ModelDeployment is Ready, its pod — as the operator rendered it — run locally by the
   contract runner (kwok pods run no containers), and a ready-to-paste prediction command.

Ctrl-C stops the operator, the local pod and the model store; ``make cluster-down`` stops the
control plane.
"""

from __future__ import annotations

import argparse
import base64
import json
import shlex
import subprocess
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml

from modeldeploy_devenv.cluster import ClusterState, default_directory, kubectl
from modeldeploy_devenv.loopback_moto import S3_CREDENTIALS, moto_server
from modeldeploy_devenv.operator_process import OperatorProcess, start_operator
from modeldeploy_devenv.pod_runner import LocalPod
from modeldeploy_devenv.polling import WaitTimeoutError, wait_until
from modeldeploy_devenv.repository import CRD_DIR, EXAMPLES_DIR, REPO_ROOT
from modeldeploy_devenv.sample_models import upload_sample_models

EXAMPLE = EXAMPLES_DIR / "iris.yaml"
READY_TIMEOUT_SECONDS = 180.0
DEV_NAMESPACE = "modeldeploy-dev"


def say(message: str) -> None:
    print(f"\033[1m[dev]\033[0m {message}", flush=True)


def dev_manifests(endpoint: str, sha256: str) -> list[dict[str, Any]]:
    """The example ModelDeployment, pinned to the uploaded digest, plus its store credentials."""
    example = yaml.safe_load(EXAMPLE.read_text())
    example["metadata"]["namespace"] = DEV_NAMESPACE
    example["spec"]["model"]["sha256"] = sha256
    credentials = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": example["spec"]["model"]["storageSecretRef"]["name"],
            "namespace": DEV_NAMESPACE,
        },
        "stringData": {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint},
    }
    return [credentials, example]


def read_secret_data(kubeconfig: str, name: str) -> dict[str, str]:
    secret = json.loads(kubectl(kubeconfig, "get", "secret", name, "-n", DEV_NAMESPACE, "-o", "json").stdout)
    return dict(secret.get("data", {}))


def wait_ready(kubeconfig: str, name: str, operator: OperatorProcess) -> None:
    def ready() -> bool:
        if operator.process.poll() is not None:
            raise SystemExit(
                f"[dev] the operator exited with {operator.process.returncode}; see its log above"
            )
        wait = ["wait", f"mdep/{name}", "-n", DEV_NAMESPACE, "--for=condition=Ready", "--timeout=5s"]
        return kubectl(kubeconfig, *wait, check=False).returncode == 0

    try:
        wait_until(f"ModelDeployment {name} Ready", ready, timeout=READY_TIMEOUT_SECONDS, interval=0)
    except WaitTimeoutError as error:
        raise SystemExit(f"[dev] {error}") from None


def prediction_command(url: str, name: str, key: str) -> str:
    body = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
    }
    return (
        f"curl -s -H {shlex.quote('Authorization: Bearer ' + key)} -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(body))} {url}/v2/models/{name}/infer"
    )


def install_crds(kubeconfig: str) -> None:
    crds = str(CRD_DIR)
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", crds)
    kubectl(kubeconfig, "wait", "--for", "condition=Established", "--timeout=60s", "-f", crds)


def run(kubeconfig: str, once: bool) -> int:
    install_crds(kubeconfig)
    say(f"installed the CRDs from crds/ into {kubeconfig}")
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="modeldeploy-dev-") as workdir:
        say(f"model store (moto S3 on loopback): {endpoint}")
        digests = upload_sample_models(endpoint, Path(workdir))
        kubectl(kubeconfig, "create", "namespace", DEV_NAMESPACE, check=False)
        manifests = dev_manifests(endpoint, digests["1"])
        name = manifests[-1]["metadata"]["name"]
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
        kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=document)
        say(f"applied {EXAMPLE.relative_to(REPO_ROOT)} in namespace {DEV_NAMESPACE}; starting the operator")
        operator = start_operator(kubeconfig, DEV_NAMESPACE, arguments=["--log-format", "plain"])
        pod: LocalPod | None = None
        try:
            wait_ready(kubeconfig, name, operator)
            deployment = json.loads(
                kubectl(kubeconfig, "get", "deployment", name, "-n", DEV_NAMESPACE, "-o", "json").stdout
            )
            pod = LocalPod(
                template=deployment["spec"]["template"],
                read_secret=lambda secret: read_secret_data(kubeconfig, secret),
            )
            pod.start()
            client = manifests[-1]["spec"]["auth"]["clients"][0]["name"]
            key = base64.b64decode(
                read_secret_data(kubeconfig, f"{name}-client-{client}")["api-key"]
            ).decode()
            command = prediction_command(pod.url(), name, key)
            say(f"{name} is Ready; its pod runs locally. Predict with:\n\n{command}\n")
            if once:  # the newcomer path, checked: run the printed command itself
                answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False)
                print(answer.stdout)
                return 0 if '"outputs"' in answer.stdout else 1
            say("Ctrl-C to stop (the control plane keeps running; make cluster-down stops it)")
            with suppress(KeyboardInterrupt):
                operator.process.wait()
            return 0
        finally:
            if pod is not None:
                pod.stop()
            operator.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run the printed prediction command once, then stop (used by tests)",
    )
    parser.add_argument(
        "--kubeconfig", help="cluster to use (default: the local control plane of make cluster-up)"
    )
    arguments = parser.parse_args()
    kubeconfig = arguments.kubeconfig
    if kubeconfig is None:
        state = ClusterState.load(default_directory())
        if state is None:
            raise SystemExit("[dev] no local control plane; run `make cluster-up` (make dev does) first")
        kubeconfig = state.kubeconfig
    return run(kubeconfig, arguments.once)


if __name__ == "__main__":
    sys.exit(main())
