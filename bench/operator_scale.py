"""Benchmark: the operator at scale against a plain script writing the same children directly.

Each round has two phases, each on a fresh private control plane (or both on ``--kubeconfig``,
the yardstick's namespace deleted before the operator phase), so both start from an empty cluster:

1. yardstick: a script server-side-applies the very objects the operator would build (Deployment,
   Service, hashes Secret, one Secret per client, ServiceMonitor) for N names with the same
   number of threads as operator workers, then waits until every Deployment has all replicas
   ready;
2. operator: ``modeldeploy-operator`` runs as a subprocess, N ModelDeployments are applied at once
   (server-side apply, by the same client and threads as the yardstick's writes) and the clock
   stops when every one reports ``Ready=True``.

Reported: both times and their ratio; API writes per ModelDeployment from the API server's own
``apiserver_request_total`` (verbs APPLY/PATCH/POST/DELETE on modeldeployments (less this
script's own APPLY of the ModelDeployments), deployments,
services, secrets and servicemonitors, i.e. the operator's verbs; the controllers' PUTs and
Events are not attributable by resource and are excluded, the operator's own Event count is
printed from its metrics) against the minimum (one write per child + 2 status writes); the
operator's peak RSS (VmHWM); the CPU seconds each process (etcd, API server, controllers, kwok,
this script, the operator) spent in each phase, to show where the time goes.

    .venv/bin/python bench/operator_scale.py --count 100
    .venv/bin/python bench/operator_scale.py --count 1000 --timeout 2400 --repeat 3
    .venv/bin/python bench/operator_scale.py --count 3 --timeout 240   # the smoke run of the tests
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from kubernetes.watch import Watch
from urllib3.exceptions import HTTPError

from modeldeploy_devenv.cluster import kubectl, start, stop
from modeldeploy_devenv.operator_process import OperatorProcess, start_operator
from modeldeploy_devenv.polling import wait_until
from modeldeploy_devenv.repository import CRD_DIR, REPO_ROOT
from modeldeploy_operator.builders import (
    build_client_secret,
    build_deployment,
    build_hashes_secret,
    build_service,
    build_service_monitor,
)
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.kube import Kube, load_api_client
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_runtime.apikeys import mint_key

CRD = CRD_DIR / "modeldeploy.io_modeldeployments.yaml"
SERVICE_MONITOR_CRD = REPO_ROOT / "tests" / "operator" / "servicemonitor-crd.yaml"
WRITE_VERBS = {"APPLY", "PATCH", "POST", "DELETE", "CREATE"}
OUR_RESOURCES = {"modeldeployments", "deployments", "services", "secrets", "servicemonitors"}
WORKERS = OperatorConfig().workers
# The controller-manager's garbage collector picks up new resources on a 30 s discovery resync.
CONTROLLERS_DISCOVERY_TIMEOUT = 90
OPERATOR_WATCHES_TIMEOUT = 30


@dataclass
class Result:
    count: int
    clients: int
    service_monitor: bool
    direct_written_seconds: float
    direct_seconds: float
    operator_status_seconds: float
    operator_seconds: float
    ratio: float
    writes_per_md: float
    minimum_writes_per_md: int
    writes_by_resource: dict[str, int]
    operator_events: float
    operator_peak_rss_mb: float
    reconciles_per_md: float
    cpu_seconds: dict[str, dict[str, float]]  # phase -> process -> CPU seconds spent in it
    requests_per_md: dict[str, dict[str, float]]  # phase -> "VERB resource" -> requests (all clients) / N
    ratios: list[float] = field(default_factory=list)  # of every round, when repeated (sorted)


@dataclass
class Phase:
    """One phase's measurements: milestones (seconds from its start), CPU seconds per process and
    API requests (all clients) from its start until its last milestone."""

    milestones: dict[str, float]
    cpu: dict[str, float]
    requests: Counter[str]


@dataclass
class OperatorFigures:
    events: float  # Events it posted
    peak_rss_mb: float
    reconciles: float


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


def api_server_samples(kubeconfig: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of the API server's metric ``name`` right now."""
    for line in kubectl(kubeconfig, "get", "--raw", "/metrics").stdout.splitlines():
        if line.startswith(name + "{"):
            labels = line[line.index("{") + 1 : line.index("}")].split(",")
            yield (
                {k: v.strip('"') for k, v in (part.split("=", 1) for part in labels)},
                float(line.rsplit(" ", 1)[1]),
            )


def api_requests(kubeconfig: str) -> Counter[str]:
    """Requests so far, as "VERB resource[/subresource]", from the API server's own metrics."""
    counts: Counter[str] = Counter()
    for labels, value in api_server_samples(kubeconfig, "apiserver_request_total"):
        if labels.get("dry_run"):
            continue
        key = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        counts[f"{labels.get('verb')} {key}"] += int(value)
    return counts


def open_watches(kubeconfig: str) -> Counter[str]:
    """Open WATCH requests per resource right now (the API server's ``apiserver_longrunning_requests``)."""
    watches: Counter[str] = Counter()
    for labels, value in api_server_samples(kubeconfig, "apiserver_longrunning_requests"):
        if labels.get("verb") == "WATCH" and labels.get("resource"):
            watches[labels["resource"]] += int(value)
    return +watches  # only the positive counts


def operator_writes(requests: Counter[str]) -> Counter[str]:
    """The write requests the operator makes (the controllers' PUTs are left out)."""
    counts: Counter[str] = Counter()
    for key, value in requests.items():
        verb, resource = key.split(" ", 1)
        if verb in WRITE_VERBS and resource.split("/")[0] in OUR_RESOURCES:
            counts[key] = value
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


def wait_for_milestones(
    reached: dict[str, Callable[[], bool]], started: float, timeout: float
) -> dict[str, float]:
    """Seconds from ``started`` until each probe in ``reached`` first holds."""
    milestones: dict[str, float] = {}
    while len(milestones) < len(reached):
        if time.monotonic() > started + timeout:
            missing = ", ".join(name for name in reached if name not in milestones)
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {missing}; reached: {milestones}")
        for name, probe in reached.items():
            if name not in milestones and probe():
                milestones[name] = time.monotonic() - started
        time.sleep(0.1)
    return milestones


def deployment_ready(deployment: dict[str, Any]) -> bool:
    status, wanted = deployment.get("status") or {}, deployment["spec"]["replicas"]
    return bool(status.get("readyReplicas", 0) == wanted and status.get("updatedReplicas", 0) == wanted)


def has_status(body: dict[str, Any]) -> bool:
    """The operator writes the first status after every child, within the status debounce."""
    return "observedGeneration" in (body.get("status") or {})


def model_deployment_ready(body: dict[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class Follower:
    """Follows one resource in a namespace with a watch: how many objects satisfy each predicate.

    A watch costs the API server next to nothing (the events are encoded for the operator's and the
    controllers' watches anyway), while polling a LIST of N objects every fraction of a second
    would cost it more CPU than the work measured, and unequally in the two phases.
    """

    def __init__(self, kubeconfig: str, resource: tuple[str, str, str], namespace: str,
                 predicates: dict[str, Callable[[dict[str, Any]], bool]]) -> None:  # fmt: skip
        self._objects = CustomObjectsApi(load_api_client(2, kubeconfig))
        self._resource, self._namespace, self._predicates = resource, namespace, predicates
        self._lock = threading.Lock()
        self._matching: dict[str, set[str]] = {name: set() for name in predicates}
        self._stopped = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()

    def stop(self) -> None:
        """Stop following (the watch in flight ends with its timeout or its cluster)."""
        self._stopped.set()

    def _follow(self) -> None:
        group, version, plural = self._resource
        while not self._stopped.is_set():  # a watch ends after its timeout; the next one lists afresh
            try:
                events = Watch().stream(  # type: ignore[no-untyped-call]
                    self._objects.list_namespaced_custom_object, group, version, self._namespace, plural,
                    timeout_seconds=300,
                )  # fmt: skip
                for event in events:
                    if self._stopped.is_set():
                        return
                    self._observe(event["type"], event["object"])
            except (ApiException, HTTPError, OSError, ValueError):  # e.g. the cluster stopping at the end
                time.sleep(0.5)

    def _observe(self, event_type: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            for predicate, matching in self._matching.items():
                if event_type != "DELETED" and self._predicates[predicate](obj):
                    matching.add(name)
                else:
                    matching.discard(name)

    def count(self, predicate: str) -> int:
        with self._lock:
            return len(self._matching[predicate])


DEPLOYMENTS = ("apps", "v1", "deployments")
MODEL_DEPLOYMENTS = ("modeldeploy.io", "v1alpha1", "modeldeployments")


def run_direct(
    kube: Kube, kubeconfig: str, args: argparse.Namespace, namespace: str, pids: dict[str, int]
) -> Phase:
    """Milestones "written" (every child) and "ready" (every Deployment)."""
    kubectl(kubeconfig, "create", "namespace", namespace)
    objects = [
        o
        for i in range(args.count)
        for o in direct_children(f"m{i}", namespace, args.clients, args.service_monitor)
    ]
    requests_before, cpu_before = api_requests(kubeconfig), cpu_seconds(pids)
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(kube.apply, objects))
    written = time.monotonic() - started
    # Followed only from here: parsing watch events would slow this script's own writes.
    deployments = Follower(kubeconfig, DEPLOYMENTS, namespace, {"ready": deployment_ready})
    wait_until("the directly written Deployments to be ready", lambda: deployments.count("ready") == args.count,
               timeout=args.timeout, interval=0.1)  # fmt: skip
    elapsed, cpu = time.monotonic() - started, cpu_spent(cpu_before, cpu_seconds(pids))
    deployments.stop()
    return Phase({"written": written, "ready": elapsed}, cpu, api_requests(kubeconfig) - requests_before)


@contextmanager
def operator(kubeconfig: str, namespace: str, log: Path) -> Iterator[OperatorProcess]:
    """The operator, serving its metrics, for the length of the block."""
    running = start_operator(kubeconfig, namespace, log=log)
    print(f"operator log: {log}", file=sys.stderr)
    try:
        yield running
    finally:
        running.stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_operator(
    kubeconfig: str,
    args: argparse.Namespace,
    workdir: Path,
    namespace: str,
    *,
    pids: dict[str, int],
) -> tuple[Phase, OperatorFigures]:
    """The phase (milestones: every ModelDeployment has a "status", every one is "ready") and the
    operator's own figures."""
    kubectl(kubeconfig, "create", "namespace", namespace)
    watched = OUR_RESOURCES if args.service_monitor else OUR_RESOURCES - {"servicemonitors"}
    watches_before = open_watches(kubeconfig)
    with operator(kubeconfig, namespace, workdir / "operator.log") as running:

        def watching() -> bool:
            watches = open_watches(kubeconfig)
            return all(watches[resource] > watches_before[resource] for resource in watched)

        # kopf opens its watches after the startup handler that serves the metrics: its start-up
        # (discovery, a LIST and a WATCH per resource) is not part of the measured phase. On a
        # shared cluster others' watches come and go, so there this wait is bounded and a hint.
        deadline = time.monotonic() + OPERATOR_WATCHES_TIMEOUT
        while not (is_watching := watching()) and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"operator watching every resource: {is_watching}", file=sys.stderr)
        requests_before = api_requests(kubeconfig)
        items = [model_deployment(f"m{i}", namespace, args.clients) for i in range(args.count)]
        kube = Kube(load_api_client(WORKERS + 2, kubeconfig))
        pids = {**pids, "operator": running.process.pid}
        # Only the ModelDeployments are followed: following the Deployments as well would add a
        # watch that parses every Deployment status update to the measured phase.
        model_deployments = Follower(kubeconfig, MODEL_DEPLOYMENTS, namespace,
                                     {"status": has_status, "ready": model_deployment_ready})  # fmt: skip
        reached = {
            "status": lambda: model_deployments.count("status") == args.count,
            "ready": lambda: model_deployments.count("ready") == args.count,
        }
        cpu_before = cpu_seconds(pids)
        started = time.monotonic()
        # Applied the way the yardstick writes its children (same client, same threads): `kubectl
        # apply` would add a process start, discovery and an OpenAPI download to this phase only.
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(kube.apply, items))
        milestones = wait_for_milestones(reached, started, args.timeout)
        cpu = cpu_spent(cpu_before, cpu_seconds(pids))
        model_deployments.stop()
        time.sleep(args.settle)  # writes that trail Ready (there should be none) are counted too
        phase = Phase(milestones, cpu, api_requests(kubeconfig) - requests_before)
        figures = OperatorFigures(
            events=running.metric("modeldeploy_operator_api_writes_total", 'kind="Event"'),
            peak_rss_mb=peak_rss_mb(running.process.pid),
            reconciles=running.metric("modeldeploy_operator_reconciles_total"),
        )
    return phase, figures


@contextmanager
def control_plane(args: argparse.Namespace, directory: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """(kubeconfig, PIDs of its processes) of a fresh private control plane for one phase, so both
    phases start from identical, empty clusters; or of the ``--kubeconfig`` cluster. The CRDs are
    installed either way, and the phase starts once the controller-manager watches them: its
    garbage collector learns new resources on a 30 s discovery resync, and until then it looks up
    the owner of every owner-referenced child with a GET of its own (337 per 1000 in one round), a
    cost no cluster pays whose CRD was installed before its first ModelDeployment."""
    state = None if args.kubeconfig else start(directory)
    kubeconfig = state.kubeconfig if state else args.kubeconfig
    try:
        crds = {CRD: "modeldeployments"} | (
            {SERVICE_MONITOR_CRD: "servicemonitors"} if args.service_monitor else {}
        )
        for crd in crds:
            kubectl(kubeconfig, "apply", "--server-side", "-f", str(crd))
            kubectl(kubeconfig, "wait", "--for", "condition=Established", "--timeout=60s", "-f", str(crd))
        wait_until("the controller-manager to watch the new resources",
                   lambda: set(crds.values()) <= set(open_watches(kubeconfig)),
                   timeout=CONTROLLERS_DISCOVERY_TIMEOUT, interval=0.1)  # fmt: skip
        yield kubeconfig, dict(state.pids) if state else {}
    finally:
        if state is not None:
            stop(directory)


def print_report(r: Result) -> None:
    print(
        f"ModelDeployments: {r.count} ({r.clients} client(s) each, ServiceMonitor CRD: {r.service_monitor})"
    )
    print(
        f"direct-write yardstick: {r.direct_written_seconds:7.1f} s writing every child, "
        f"{r.direct_seconds:7.1f} s until every Deployment is ready"
    )
    print(
        f"operator:               {r.operator_status_seconds:7.1f} s until every ModelDeployment has a status"
    )
    print(
        f"operator:               {r.operator_seconds:7.1f} s until every ModelDeployment is Ready  "
        f"(ratio {r.ratio:.2f}, target <= 1.5)"
        + (
            f"; median of {len(r.ratios)} rounds: {', '.join(f'{x:.2f}' for x in r.ratios)}"
            if len(r.ratios) > 1
            else ""
        )
    )
    print(
        f"API writes per ModelDeployment: {r.writes_per_md:.2f}  "
        f"(minimum {r.minimum_writes_per_md}, target <= {r.minimum_writes_per_md + 1})"
    )
    for key, value in r.writes_by_resource.items():
        print(f"    {key:40} {value}")
    print(
        f"Events posted by the operator: {r.operator_events:.0f}; reconciles per ModelDeployment: {r.reconciles_per_md:.2f}"
    )
    print(f"operator peak RSS: {r.operator_peak_rss_mb:.1f} MB  (target <= 150 MB at N=1000)")
    processes = list(r.cpu_seconds["operator"])
    print("CPU seconds per process:  " + "  ".join(f"{name:>12}" for name in processes))
    for phase, spent in r.cpu_seconds.items():
        print(f"    {phase:20}  " + "  ".join(f"{spent.get(name, 0.0):12.1f}" for name in processes))
    print("API requests per ModelDeployment (all clients), the 12 most frequent in either phase:")
    yardstick, operator_phase = r.requests_per_md["yardstick"], r.requests_per_md["operator"]
    top = Counter(yardstick) | Counter(operator_phase)
    for key, _ in top.most_common(12):
        print(
            f"    {key:40} yardstick {yardstick.get(key, 0.0):6.2f}   operator {operator_phase.get(key, 0.0):6.2f}"
        )


def run_round(args: argparse.Namespace, workdir: Path) -> Result:
    """One yardstick phase and one operator phase."""
    workdir.mkdir(parents=True)
    suffix = secrets.token_hex(3)
    namespaces = (f"bench-direct-{suffix}", f"bench-operator-{suffix}")
    shared = args.kubeconfig
    had_service_monitors = shared is not None and kubectl(
        shared, "get", "crd", "servicemonitors.monitoring.coreos.com", check=False
    ).returncode == 0  # fmt: skip
    benchmark = {"benchmark": os.getpid()}
    try:
        with control_plane(args, workdir / "yardstick") as (kubeconfig, pids):
            kube = Kube(load_api_client(WORKERS + 2, kubeconfig))
            direct = run_direct(kube, kubeconfig, args, namespaces[0], {**pids, **benchmark})
        if shared is not None:  # the operator phase starts from a cluster as empty as this one was
            kubectl(shared, "delete", "namespace", namespaces[0], f"--timeout={args.timeout:.0f}s")
        with control_plane(args, workdir / "operator") as (kubeconfig, pids):
            operated, figures = run_operator(
                kubeconfig, args, workdir, namespaces[1], pids={**pids, **benchmark}
            )
    finally:
        if shared is not None:  # leave a shared cluster as it was
            for namespace in namespaces:
                kubectl(shared, "delete", "namespace", namespace, "--wait=false", check=False)
            if args.service_monitor and not had_service_monitors:
                kubectl(shared, "delete", "-f", str(SERVICE_MONITOR_CRD), "--timeout=60s", check=False)
    minimum = 3 + args.clients + int(args.service_monitor) + 2
    writes = operator_writes(operated.requests)
    writes.pop("APPLY modeldeployments", None)  # this script creating the ModelDeployments
    written, direct_seconds = direct.milestones["written"], direct.milestones["ready"]
    milestones, elapsed = operated.milestones, operated.milestones["ready"]
    print(f"{workdir.name}: ratio {elapsed / direct_seconds:.2f}, operator peak RSS {figures.peak_rss_mb:.1f} MB",
          file=sys.stderr)  # fmt: skip
    for name, phase, seconds in (("yardstick", direct, direct_seconds), ("operator", operated, elapsed)):
        spent = ", ".join(f"{process} {cpu:.1f}" for process, cpu in phase.cpu.items())
        print(f"    {name}: {seconds:.1f} s, {sum(phase.cpu.values()):.1f} CPU-s ({spent})", file=sys.stderr)
    return Result(
        count=args.count, clients=args.clients, service_monitor=args.service_monitor,
        direct_written_seconds=round(written, 2), direct_seconds=round(direct_seconds, 2),
        operator_status_seconds=round(milestones["status"], 2),
        operator_seconds=round(elapsed, 2), ratio=round(elapsed / direct_seconds, 2),
        writes_per_md=round(sum(writes.values()) / args.count, 2), minimum_writes_per_md=minimum,
        writes_by_resource=dict(sorted(writes.items())), operator_events=figures.events, operator_peak_rss_mb=round(figures.peak_rss_mb, 1),
        reconciles_per_md=round(figures.reconciles / args.count, 2),
        cpu_seconds={"yardstick": direct.cpu, "operator": operated.cpu},
        requests_per_md={name: {key: round(value / args.count, 2) for key, value in phase.requests.most_common()}
                         for name, phase in (("yardstick", direct), ("operator", operated))},
    )  # fmt: skip


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
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds to run (each phase on fresh control planes); the median round is reported")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    rounds = sorted(
        (run_round(args, workdir / f"round{i}") for i in range(args.repeat)), key=lambda r: r.ratio
    )
    result = rounds[len(rounds) // 2]  # the median round (the upper one of an even count)
    result.ratios = [r.ratio for r in rounds]
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print_report(result)
    return result


if __name__ == "__main__":
    main()
