"""Benchmark: the operator at scale against a plain script writing the same children directly.

One run, one control plane (a private one started here, or ``--kubeconfig``):

1. yardstick: a script server-side-applies the very objects the operator would build (Deployment,
   Service, hashes Secret, one Secret per client, ServiceMonitor) for N names with the same
   number of threads as operator workers, then waits until every Deployment has all replicas
   ready; its namespace is then deleted, and the next phase starts once it is gone, so both
   phases start from the same, empty cluster;
2. operator: ``modeldeploy-operator`` runs as a subprocess, N ModelDeployments are applied at once
   and the clock stops when every one reports ``Ready=True``.

Reported: both times and their ratio; API writes per ModelDeployment from the API server's own
``apiserver_request_total`` (verbs APPLY/PATCH/POST/DELETE on modeldeployments (less this
script's own APPLY of the ModelDeployments), deployments,
services, secrets and servicemonitors, i.e. the operator's verbs; the controllers' PUTs and
Events are not attributable by resource and are excluded, the operator's own Event count is
printed from its metrics) against the minimum (one write per child + 2 status writes); the
operator's peak RSS (VmHWM); the CPU seconds each process (etcd, API server, controllers, kwok,
this script, the operator) spent in each phase, to show where the time goes.

    .venv/bin/python bench/operator_scale.py --count 100
    .venv/bin/python bench/operator_scale.py --count 1000
    .venv/bin/python bench/operator_scale.py --count 3 --timeout 240   # the smoke run of the tests
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from modeldeploy_operator.builders import (  # noqa: E402
    build_client_secret,
    build_deployment,
    build_hashes_secret,
    build_service,
    build_service_monitor,
)
from modeldeploy_operator.config import OperatorConfig  # noqa: E402
from modeldeploy_operator.kube import Kube, load_api_client  # noqa: E402
from modeldeploy_operator.model import ModelDeployment  # noqa: E402
from modeldeploy_runtime.apikeys import mint_key  # noqa: E402
from tests.controlplane.cluster import free_port, kubectl, start, stop  # noqa: E402

CRD = REPO_ROOT / "crds" / "modeldeploy.io_modeldeployments.yaml"
SERVICE_MONITOR_CRD = REPO_ROOT / "tests" / "operator" / "servicemonitor-crd.yaml"
WRITE_VERBS = {"APPLY", "PATCH", "POST", "DELETE", "CREATE"}
OUR_RESOURCES = {"modeldeployments", "deployments", "services", "secrets", "servicemonitors"}
WORKERS = OperatorConfig().workers


@dataclass
class Result:
    count: int
    clients: int
    service_monitor: bool
    direct_written_seconds: float
    direct_seconds: float
    operator_children_seconds: float
    operator_deployments_ready_seconds: float
    operator_seconds: float
    ratio: float
    writes_per_md: float
    minimum_writes_per_md: int
    writes_by_resource: dict[str, int]
    operator_events: float
    operator_peak_rss_mb: float
    cpu_seconds: dict[str, dict[str, float]]  # phase -> process -> CPU seconds spent in it


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return used


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 1) for name in after}


def api_writes(kubeconfig: str) -> Counter[str]:
    """Write requests per resource[/subresource] so far, from the API server's own metrics."""
    text = kubectl(kubeconfig, "get", "--raw", "/metrics").stdout
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") not in WRITE_VERBS or labels.get("resource") not in OUR_RESOURCES:
            continue
        if labels.get("dry_run"):
            continue
        key = labels["resource"] + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        counts[f"{labels['verb']} {key}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def model_deployment(name: str, namespace: str, clients: int) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": f"s3://models/{name}/1/model.joblib", "version": "1"},
            "auth": {"clients": [{"name": f"client{i}"} for i in range(clients)]},
        },
    }


def direct_children(name: str, namespace: str, clients: int, service_monitor: bool) -> list[dict[str, Any]]:
    """What the operator would write for one ModelDeployment, without owner references."""
    body = model_deployment(name, namespace, clients)
    body["metadata"].update(uid="00000000-0000-0000-0000-000000000000", generation=1)
    md = ModelDeployment.from_body(body)
    keys = {client: mint_key(client) for client in md.client_names}
    objects = [build_hashes_secret(md, [k.hashed for k in keys.values()])]
    objects += [build_client_secret(md, client, key.plaintext) for client, key in keys.items()]
    objects += [build_deployment(md, OperatorConfig()), build_service(md)]
    if service_monitor:
        objects.append(build_service_monitor(md))
    for obj in objects:
        del obj["metadata"]["ownerReferences"]
    return objects


def wait_for(what: str, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def all_deployments_ready(kube: Kube, namespace: str, count: int) -> bool:
    items = kube.list("Deployment", namespace).items
    ready = sum(1 for d in items if d.get("status", {}).get("readyReplicas", 0) == d["spec"]["replicas"]
                and d.get("status", {}).get("updatedReplicas", 0) == d["spec"]["replicas"])  # fmt: skip
    return ready == count


def all_ready(kube: Kube, namespace: str, count: int) -> bool:
    items = kube.list("ModelDeployment", namespace).items
    ready = sum(
        1
        for md in items
        if any(
            c["type"] == "Ready" and c["status"] == "True" for c in md.get("status", {}).get("conditions", [])
        )
    )
    return ready == count


def run_direct(
    kube: Kube, kubeconfig: str, args: argparse.Namespace, namespace: str, pids: dict[str, int]
) -> tuple[float, float, dict[str, float]]:
    """(seconds until every child is written, seconds until every Deployment is ready, CPU seconds
    per process); the namespace is deleted again before this returns."""
    kubectl(kubeconfig, "create", "namespace", namespace)
    objects = [
        o
        for i in range(args.count)
        for o in direct_children(f"m{i}", namespace, args.clients, args.service_monitor)
    ]
    cpu_before = cpu_seconds(pids)
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(kube.apply, objects))
    written = time.monotonic() - started
    wait_for(
        "the directly written Deployments to be ready",
        lambda: all_deployments_ready(kube, namespace, args.count),
        args.timeout,
    )
    elapsed = time.monotonic() - started
    cpu = cpu_spent(cpu_before, cpu_seconds(pids))
    kubectl(kubeconfig, "delete", "namespace", namespace, f"--timeout={args.timeout:.0f}s")
    return written, elapsed, cpu


@contextmanager
def operator(kubeconfig: str, namespace: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy_operator.cli", "--namespace", namespace, "--metrics-port", str(port)],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    print(f"operator log: {log}", file=sys.stderr)
    try:
        yield process, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def operator_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def watch_milestones(
    kube: Kube, namespace: str, args: argparse.Namespace, started: float
) -> dict[str, float]:
    """Seconds from ``started`` until: every child exists, every Deployment is ready, every
    ModelDeployment is Ready (the last is the benchmark's figure; the others locate the time)."""
    milestones: dict[str, float] = {}
    deadline = started + args.timeout
    while "ready" not in milestones:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {args.timeout:.0f}s; reached: {milestones}")
        now = time.monotonic() - started
        if "children" not in milestones:
            kinds = ["Deployment", "Service"] + (["ServiceMonitor"] if args.service_monitor else [])
            if all(len(kube.list(kind, namespace).items) == args.count for kind in kinds):
                milestones["children"] = now
        if (
            "children" in milestones
            and "deployments_ready" not in milestones
            and all_deployments_ready(kube, namespace, args.count)
        ):
            milestones["deployments_ready"] = now
        if "deployments_ready" in milestones and all_ready(kube, namespace, args.count):
            milestones["ready"] = now
        time.sleep(0.25)
    return milestones


def run_operator(
    kube: Kube,
    kubeconfig: str,
    args: argparse.Namespace,
    workdir: Path,
    namespace: str,
    *,
    pids: dict[str, int],
) -> tuple[dict[str, float], Counter[str], float, float, dict[str, float]]:
    kubectl(kubeconfig, "create", "namespace", namespace)
    with operator(kubeconfig, namespace, workdir / "operator.log") as (process, port):

        def up() -> bool:
            try:
                return operator_metric(port, "modeldeploy_operator_managed_modeldeployments") == 0
            except OSError:
                return False

        wait_for("the operator", up, 60)
        before = api_writes(kubeconfig)
        items = [model_deployment(f"m{i}", namespace, args.clients) for i in range(args.count)]
        pids = {**pids, "operator": process.pid}
        cpu_before = cpu_seconds(pids)
        started = time.monotonic()
        kubectl(
            kubeconfig,
            "apply",
            "--server-side",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        milestones = watch_milestones(kube, namespace, args, started)
        cpu = cpu_spent(cpu_before, cpu_seconds(pids))
        time.sleep(args.settle)  # writes that trail Ready (there should be none) are counted too
        writes = api_writes(kubeconfig) - before
        writes.pop("APPLY modeldeployments", None)  # this script creating the ModelDeployments (kubectl)
        events = 0.0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("modeldeploy_operator_api_writes_total{") and 'kind="Event"' in line:
                    events += float(line.rsplit(" ", 1)[1])
        rss = peak_rss_mb(process.pid)
    return milestones, writes, events, rss, cpu


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100, help="ModelDeployments to create")
    parser.add_argument("--clients", type=int, default=1, help="API clients per ModelDeployment")
    parser.add_argument("--no-service-monitor", dest="service_monitor", action="store_false",
                        help="do not install the (minimal) ServiceMonitor CRD")  # fmt: skip
    parser.add_argument("--kubeconfig", help="use this cluster instead of starting a private control plane")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds to wait for readiness in each phase"
    )
    parser.add_argument(
        "--settle", type=float, default=5, help="quiet seconds after Ready before counting writes"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    cluster_dir = None
    kubeconfig = args.kubeconfig
    pids = {"benchmark": os.getpid()}
    if kubeconfig is None:
        cluster_dir = workdir / "controlplane"
        state = start(cluster_dir)
        kubeconfig, pids = state.kubeconfig, {**state.pids, **pids}
    suffix = secrets.token_hex(3)
    namespaces = (f"bench-direct-{suffix}", f"bench-operator-{suffix}")
    had_service_monitors = (
        kubectl(kubeconfig, "get", "crd", "servicemonitors.monitoring.coreos.com", check=False).returncode
        == 0
    )
    try:
        for crd in [CRD] + ([SERVICE_MONITOR_CRD] if args.service_monitor else []):
            kubectl(kubeconfig, "apply", "--server-side", "-f", str(crd))
            kubectl(kubeconfig, "wait", "--for", "condition=Established", "--timeout=60s", "-f", str(crd))
        kube = Kube(load_api_client(WORKERS + 2, kubeconfig))
        written, direct, direct_cpu = run_direct(kube, kubeconfig, args, namespaces[0], pids)
        milestones, writes, events, rss, operator_cpu = run_operator(
            kube, kubeconfig, args, workdir, namespaces[1], pids=pids
        )
        elapsed = milestones["ready"]
    finally:
        if cluster_dir is not None:
            stop(cluster_dir)
        else:  # leave a shared cluster as it was
            for namespace in namespaces:
                kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False)
            if args.service_monitor and not had_service_monitors:
                kubectl(kubeconfig, "delete", "-f", str(SERVICE_MONITOR_CRD), "--timeout=60s", check=False)
    minimum = 3 + args.clients + int(args.service_monitor) + 2
    result = Result(
        count=args.count, clients=args.clients, service_monitor=args.service_monitor,
        direct_written_seconds=round(written, 2), direct_seconds=round(direct, 2),
        operator_children_seconds=round(milestones["children"], 2),
        operator_deployments_ready_seconds=round(milestones["deployments_ready"], 2),
        operator_seconds=round(elapsed, 2), ratio=round(elapsed / direct, 2),
        writes_per_md=round(sum(writes.values()) / args.count, 2), minimum_writes_per_md=minimum,
        writes_by_resource=dict(sorted(writes.items())), operator_events=events, operator_peak_rss_mb=round(rss, 1),
        cpu_seconds={"yardstick": direct_cpu, "operator": operator_cpu},
    )  # fmt: skip
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"ModelDeployments: {args.count} ({args.clients} client(s) each, ServiceMonitor CRD: {args.service_monitor})"
        )
        print(
            f"direct-write yardstick: {written:7.1f} s writing every child, {direct:7.1f} s until every Deployment is ready"
        )
        print(f"operator:               {milestones['children']:7.1f} s until every child exists, "
              f"{milestones['deployments_ready']:7.1f} s until every Deployment is ready")  # fmt: skip
        print(
            f"operator:               {elapsed:7.1f} s until every ModelDeployment is Ready  (ratio {result.ratio:.2f}, target <= 1.5)"
        )
        print(
            f"API writes per ModelDeployment: {result.writes_per_md:.2f}  (minimum {minimum}, target <= {minimum + 1})"
        )
        for key, value in result.writes_by_resource.items():
            print(f"    {key:40} {value}")
        print(f"Events posted by the operator: {events:.0f}")
        print(f"operator peak RSS: {result.operator_peak_rss_mb:.1f} MB  (target <= 150 MB at N=1000)")
        print("CPU seconds per process:  " + "  ".join(f"{name:>12}" for name in operator_cpu))
        for phase, spent in result.cpu_seconds.items():
            print(f"    {phase:20}  " + "  ".join(f"{spent.get(name, 0.0):12.1f}" for name in operator_cpu))
    return result


if __name__ == "__main__":
    main()
