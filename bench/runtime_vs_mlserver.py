"""Benchmark: modeldeploy-runtime against MLServer (mlserver-sklearn) on the same machine.

Both servers serve the same joblib files (a 1-row iris LogisticRegression and a 100-tree
RandomForest) over the Open Inference Protocol (V2) on loopback, and are driven by the same load
generator (a raw-socket HTTP/1.1 keep-alive client on uvloop; ``--load-generator wrk`` uses wrk
when installed) at each concurrency, in alternating rounds so that neither side always runs on
a warmer machine. Printed per (model, concurrency): req/s, p50 and p99 latency for each server,
the ratios against MLServer's best configuration, and process start → ready time.

MLServer runs from its own virtualenv (``.venv-bench/``, created by ``--setup-mlserver`` from the
runtime's ``bench`` extra), because it breaks with the uvloop the runtime uses; ``--skip-mlserver``
measures the runtime alone.

    .venv/bin/python bench/runtime_vs_mlserver.py --setup-mlserver --load-generator wrk   # full run
    .venv/bin/python bench/runtime_vs_mlserver.py --smoke --skip-mlserver   # seconds; run by the tests
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import httpx
import joblib
import uvloop
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modeldeploy_devenv.processes import free_port, stop_process

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MLSERVER_VENV = REPO / ".venv-bench"
MODEL_NAME = "iris"
ROW = [5.1, 3.5, 1.4, 0.2]
BODY = json.dumps(
    {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
).encode()


@dataclass
class Measurement:
    server: str
    model: str
    concurrency: int
    round: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float, what: str) -> float:
    """Seconds until ``url`` answers 200, polling every 10 ms; fails if the process exits."""
    started = time.monotonic()
    deadline = started + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"{what} exited with {process.returncode} before it was ready")
            try:
                if client.get(url).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    raise SystemExit(f"{what} not ready after {timeout}s")


# --- load generators ----------------------------------------------------------------------------


def _request_bytes(port: int, path: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


async def _connection(
    port: int, request: bytes, count: int, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            latencies.append(time.perf_counter() - started)
            if head[9:12] != b"200":
                errors.append(1)
    finally:
        writer.close()


async def _drive(port: int, path: str, concurrency: int, requests: int) -> tuple[float, list[float], int]:
    request = _request_bytes(port, path)
    latencies: list[float] = []
    errors: list[int] = []
    per_connection = [
        requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)
    ]
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, n, latencies, errors) for n in per_connection if n))
    return time.perf_counter() - started, latencies, len(errors)


def python_load(port: int, path: str, concurrency: int, requests: int) -> tuple[float, list[float], int]:
    return uvloop.run(_drive(port, path, concurrency, requests))


def cpu_times() -> tuple[int, int]:
    """(stolen, total) CPU time of this machine so far, in clock ticks, from /proc/stat (0, 0 elsewhere).

    On a virtual machine, "steal" is time the hypervisor gave this machine's vCPUs to others: a run
    with much of it measured a machine slower than its cores say, and unevenly so between servers.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0, 0
    ticks = [int(value) for value in fields[:8]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def stolen_share(before: tuple[int, int], after: tuple[int, int]) -> str:
    total = after[1] - before[1]
    return f"{(after[0] - before[0]) / total:.0%}" if total > 0 else "n/a"


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%f %%f %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def wrk_load(
    port: int, path: str, concurrency: int, seconds: float, script: Path
) -> tuple[int, float, float, float, int]:
    output = subprocess.run(
        [
            "wrk",
            "-t",
            "1",
            "--timeout",
            "30s",  # slow answers are measured, not dropped as errors
            "-c",
            str(concurrency),
            "-d",
            f"{max(1, round(seconds))}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)", output)
    if match is None:
        raise SystemExit(f"cannot read wrk output:\n{output}")
    requests, micros, p50, p99, errors = match.groups()
    return int(requests), int(micros) / 1e6, float(p50) / 1000, float(p99) / 1000, int(errors)


# --- servers ------------------------------------------------------------------------------------


@dataclass
class Server:
    label: str
    port: int
    infer_path: str
    process: subprocess.Popen[bytes]
    ready_seconds: float


@contextmanager
def runtime_server(model_path: Path, workers: int, log_dir: Path, label: str = "runtime") -> Iterator[Server]:
    port = free_port()
    command = [
        sys.executable, "-m", "modeldeploy_runtime", "serve", "--model-uri", str(model_path),
        "--model-sha256", hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "--model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
        "--workers", str(workers), "--log-level", "warning",
    ]  # fmt: skip
    log = (log_dir / f"runtime-{port}.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", process, 120, "modeldeploy-runtime")
        yield Server(f"{label}(w={workers})", port, f"/v2/models/{MODEL_NAME}/infer", process, ready)
    finally:
        stop_process(process)  # with its workers: it leads its own session
        log.close()


@contextmanager
def mlserver_server(
    model_path: Path,
    parallel_workers: int,
    mlserver: Path,
    log_dir: Path,
    batching: tuple[int, float] | None = None,
) -> Iterator[Server]:
    """MLServer serving ``model_path``; ``batching`` = (max_batch_size, max_batch_time in s) turns
    its adaptive batching on."""
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    root = Path(tempfile.mkdtemp(prefix="mlserver-", dir=log_dir))
    model_dir = root / MODEL_NAME
    model_dir.mkdir()
    shutil.copy(model_path, model_dir / "model.joblib")
    (root / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": parallel_workers,
                "debug": False,
                "host": "127.0.0.1",
            }
        )
    )
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL_NAME,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
                **({"max_batch_size": batching[0], "max_batch_time": batching[1]} if batching else {}),
            }
        )
    )
    log = (log_dir / f"mlserver-{port}.log").open("wb")
    process = subprocess.Popen(
        [str(mlserver), "start", str(root)], stdout=log, stderr=log, start_new_session=True, cwd=root
    )
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready", process, 180, "MLServer")
        label = f"mlserver(pw={parallel_workers}" + (
            f",batch={batching[0]}/{batching[1] * 1000:g}ms)" if batching else ")"
        )
        yield Server(label, port, f"/v2/models/{MODEL_NAME}/infer", process, ready)
    finally:
        stop_process(process)  # with its workers: it leads its own session
        log.close()


def setup_mlserver_venv(venv: Path) -> None:
    """Create ``venv`` with the runtime's ``bench`` extra, and this scikit-learn/joblib/numpy.

    The same library versions on both sides load the same pickles the same way.
    """
    extra = tomllib.loads((REPO / "runtime" / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pins = [f"{name}=={version(name)}" for name in ("scikit-learn", "joblib", "numpy")]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *extra["bench"], *pins], check=True)
    print(f"MLServer installed in {venv}", flush=True)


# --- the run ------------------------------------------------------------------------------------


def train_models(directory: Path) -> dict[str, Path]:
    features, labels = load_iris(return_X_y=True)
    paths = {"logreg": directory / "logreg.joblib", "forest100": directory / "forest100.joblib"}
    joblib.dump(LogisticRegression(max_iter=1000).fit(features, labels), paths["logreg"])
    joblib.dump(
        RandomForestClassifier(n_estimators=100, random_state=0).fit(features, labels), paths["forest100"]
    )
    return paths


def measure(
    server: Server,
    model: str,
    concurrency: int,
    round_: int,
    *,
    args: argparse.Namespace,
    script: Path | None,
) -> Measurement:
    if script is not None:
        requests, seconds, p50, p99, errors = wrk_load(
            server.port, server.infer_path, concurrency, args.seconds, script
        )
        return Measurement(server.label, model, concurrency, round_, requests, errors, seconds, p50, p99)
    seconds, latencies, errors = python_load(server.port, server.infer_path, concurrency, args.requests)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return Measurement(server.label, model, concurrency, round_, len(latencies), errors, seconds, p50, p99)


def bench_model(
    model: str, path: Path, args: argparse.Namespace, log_dir: Path, script: Path | None
) -> tuple[list[Measurement], dict[str, float]]:
    with ExitStack() as stack:
        servers = [stack.enter_context(runtime_server(path, args.workers, log_dir))]
        if args.mlserver is not None:
            for workers in args.mlserver_parallel_workers:
                servers.append(stack.enter_context(mlserver_server(path, workers, args.mlserver, log_dir)))
        results, ready = measure_rounds(servers, model, args, script)
    return results, ready


def measure_rounds(
    servers: list[Server], model: str, args: argparse.Namespace, script: Path | None
) -> tuple[list[Measurement], dict[str, float]]:
    """Warm every server up, then ``args.rounds`` rounds over ``args.concurrency``, the server order
    reversed every other round; returns the measurements and each server's start → ready seconds."""
    results: list[Measurement] = []
    ready: dict[str, float] = {}
    for server in servers:
        ready[server.label] = server.ready_seconds
        python_load(server.port, server.infer_path, 4, args.warmup)  # warm-up, not counted
    width = max(len(server.label) for server in servers)
    for round_ in range(args.rounds):
        order = servers if round_ % 2 == 0 else list(reversed(servers))
        for concurrency in args.concurrency:
            for server in order:
                result = measure(server, model, concurrency, round_, args=args, script=script)
                results.append(result)
                print(
                    f"  {model:9} c={concurrency:<3} round {round_} {server.label:{width}} "
                    f"{result.rps:9.0f} req/s  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    + (f"  ERRORS {result.errors}" if result.errors else ""),
                    flush=True,
                )
    return results, ready


def summarise(results: list[Measurement], ready: dict[str, dict[str, float]]) -> str:
    lines = [
        "",
        "Medians over rounds; ratios are the runtime against MLServer's best configuration (by req/s).",
        "",
        "| model | concurrency | server | req/s | p50 ms | p99 ms | failed | req/s ratio | p99 ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r.model, r.concurrency) for r in results}, key=lambda key: (key[0], key[1]))
    for model, concurrency in keys:
        by_server: dict[str, list[Measurement]] = {}
        for result in results:
            if result.model == model and result.concurrency == concurrency:
                by_server.setdefault(result.server, []).append(result)
        summary = {
            label: (
                statistics.median(m.rps for m in runs),
                statistics.median(m.p50_ms for m in runs),
                statistics.median(m.p99_ms for m in runs),
            )
            for label, runs in by_server.items()
        }
        failed = {label: sum(m.errors for m in runs) for label, runs in by_server.items()}
        peers = {label: value for label, value in summary.items() if label.startswith("mlserver")}
        best = max(peers.values(), key=lambda value: value[0]) if peers else None
        for label, (rps, p50, p99) in summary.items():
            ratio = f"{rps / best[0]:.2f}x" if best and label.startswith("runtime") else ""
            p99_ratio = f"{p99 / best[2]:.2f}x" if best and label.startswith("runtime") else ""
            lines.append(
                f"| {model} | {concurrency} | {label} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {failed[label]} "
                f"| {ratio} | {p99_ratio} |"
            )
    lines += ["", "| model | server | start → ready (s) |", "|---|---|---|"]
    for model, servers in ready.items():
        for label, seconds in servers.items():
            lines.append(f"| {model} | {label} | {seconds:.2f} |")
    return "\n".join(lines)


def measurement_parser(*, rounds: int, seconds: float) -> argparse.ArgumentParser:
    """The options every benchmark against MLServer shares (its own options come on top)."""
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny request counts, one round (for the tests)")
    parser.add_argument("--skip-mlserver", action="store_true", help="leave MLServer out")
    parser.add_argument("--setup-mlserver", action="store_true", help="create --mlserver-venv first")
    parser.add_argument("--mlserver-venv", type=Path, default=DEFAULT_MLSERVER_VENV)
    parser.add_argument("--workers", type=int, default=cores, help="worker processes of each server")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--requests", type=int, default=3000, help="per measurement (python load generator)")
    parser.add_argument("--seconds", type=float, default=seconds, help="per measurement (wrk)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--load-generator", choices=["python", "wrk"], default="python")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    return parser


def finish_measurement_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Parses the shared list options, applies --smoke's tiny counts and checks the peer."""
    args.concurrency = [int(value) for value in args.concurrency.split(",")]
    if args.smoke:
        args.requests, args.rounds, args.warmup, args.seconds = 60, 1, 10, 1.0
        args.concurrency, args.workers = [1, 4], 1
    check_peer_and_load_generator(parser, args)
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = measurement_parser(rounds=2, seconds=5.0)
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument(
        "--mlserver-parallel-workers",
        default=f"0,{os.cpu_count() or 1}",
        help="comma-separated configurations",
    )
    parser.add_argument("--models", default="logreg,forest100")
    parser.add_argument("--log-dir", type=Path, help="keep the servers' logs here (default: discarded)")
    args = parser.parse_args(argv)
    args.mlserver_parallel_workers = [int(value) for value in args.mlserver_parallel_workers.split(",")]
    return finish_measurement_args(parser, args)


def check_peer_and_load_generator(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Sets ``args.mlserver`` (None with --skip-mlserver; installs it with --setup-mlserver) and
    checks that wrk is there when asked for; ``parser.error`` otherwise."""
    mlserver = args.mlserver_venv / "bin" / "mlserver"
    if args.setup_mlserver and not args.skip_mlserver:
        setup_mlserver_venv(args.mlserver_venv)
    if args.skip_mlserver:
        args.mlserver = None
    elif mlserver.exists():
        args.mlserver = mlserver
    else:
        parser.error(
            f"MLServer not found at {mlserver}: pass --setup-mlserver to install it, or --skip-mlserver"
        )
    if args.load_generator == "wrk" and shutil.which("wrk") is None:
        parser.error("--load-generator wrk: wrk is not installed")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    all_results: list[Measurement] = []
    ready: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as scratch:
        directory = Path(scratch)
        if args.log_dir is not None:
            args.log_dir.mkdir(parents=True, exist_ok=True)
            directory = args.log_dir
        script = None
        if args.load_generator == "wrk":
            script = directory / "post.lua"
            script.write_text(WRK_SCRIPT % BODY.decode())
        models = train_models(directory)
        print(f"cores={os.cpu_count()} load generator={args.load_generator} rounds={args.rounds}", flush=True)
        for model in args.models.split(","):
            results, ready[model] = bench_model(model, models[model], args, directory, script)
            all_results += results
    print(summarise(all_results, ready))
    if args.json:
        args.json.write_text(
            json.dumps({"measurements": [asdict(r) for r in all_results], "ready": ready}, indent=2)
        )
    # The peer's failures (timeouts under load) are reported in the table; ours fail the run.
    errors = sum(result.errors for result in all_results if result.server.startswith("runtime"))
    if errors:
        print(f"{errors} requests to the runtime failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
