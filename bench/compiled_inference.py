"""Benchmark: the runtime's scikit-learn engine vs its ONNX engine vs MLServer vs a no-model floor.

One run, one machine, the same load generator for all (wrk when installed, else a raw-socket
keep-alive client on uvloop), alternating the server order every round. Models, each packaged
once with ``package(..., onnx_sample=...)``: ``logreg`` (iris LogisticRegression), ``forest100``
(RandomForestClassifier, 100 trees) and ``pipeline`` (StandardScaler + LogisticRegression). Each
request is one V2 ``infer`` call with one row. Servers:

- ``sklearn`` and ``onnx``: ``modeldeploy-runtime serve`` on ``model.joblib`` and ``model.onnx``;
- ``floor``: :mod:`floor_server` on uvicorn + httptools + uvloop, the runtime's HTTP stack, with
  the same worker count: a canned answer, no model; the targets hold the runtime to it;
- ``floor-runtime-http``: the same floor on the runtime's HTTP protocol class (deadlines, one
  write per response), reported beside the targets: how much of the runtime's throughput that
  protocol, rather than the request path, accounts for;
- MLServer 1.7.1 + mlserver-sklearn in each ``--mlserver-configs`` configuration, adaptive
  batching among them (``pw=0`` = inference in the server process, ``b=64/2ms`` =
  ``max_batch_size`` 64, ``max_batch_time`` 2 ms). Its best throughput and its best p99 are
  reported separately (they can come from different configurations).

Also: model load time per engine, each in a fresh interpreter (imports included, as a cold
worker or Lambda container pays them), median of 3. Printed: medians over rounds, then the
issue's targets as same-run ratios.

    .venv/bin/python -m bench.compiled_inference --load-generator wrk        # full run, from the repo root
    .venv/bin/python -m bench.compiled_inference --smoke --skip-mlserver     # seconds; run by the tests
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.runtime_vs_mlserver import (
    BODY,
    MODEL_NAME,
    WRK_SCRIPT,
    Measurement,
    Server,
    cpu_times,
    finish_measurement_args,
    measure_rounds,
    measurement_parser,
    mlserver_server,
    runtime_server,
    stolen_share,
    wait_ready,
)
from modeldeploy_devenv.processes import free_port, stop_process
from modeldeploy_runtime.files import sha256_file
from modeldeploy_runtime.packaging.build import package

REPO = Path(__file__).resolve().parents[1]
SKLEARN, ONNX, FLOOR, MLSERVER = "sklearn", "onnx", "floor", "mlserver"
FLOOR_RUNTIME_HTTP = "floor-runtime-http"
MODELS = {
    "logreg": lambda: LogisticRegression(max_iter=1000),
    "forest100": lambda: RandomForestClassifier(n_estimators=100, random_state=0),
    "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
}
LOAD_SNIPPET = """
import sys, time
from pathlib import Path
started = time.perf_counter()
from modeldeploy_runtime.serving.model import load_model
model = load_model(Path(sys.argv[1]), name="m", version="1", model_format=sys.argv[2],
                   expected_sha256=sys.argv[3], trusted_types=[])
model.warm_up()
print(time.perf_counter() - started)
"""


def package_models(directory: Path, names: list[str]) -> dict[str, dict[str, Path]]:
    """``{model: {"sklearn": model.joblib, "onnx": model.onnx}}``, packaged as users package them."""
    features, labels = load_iris(return_X_y=True)
    found = {}
    for name in names:
        written = package(
            MODELS[name]().fit(features, labels), directory, name=name, version="1", onnx_sample=features
        )
        assert written.onnx_artifact is not None
        found[name] = {SKLEARN: written.artifact, ONNX: written.onnx_artifact}
    return found


def load_seconds(artifact: Path, model_format: str, repeat: int) -> float:
    """Median seconds to import, read, verify, load and warm up, each time in a fresh interpreter."""
    times = []
    for _ in range(repeat):
        output = subprocess.run(
            [sys.executable, "-c", LOAD_SNIPPET, str(artifact), model_format, sha256_file(artifact)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        times.append(float(output.strip().splitlines()[-1]))
    return statistics.median(times)


@contextmanager
def floor_server(
    workers: int, log_dir: Path, *, shared_socket: bool = False, runtime_protocol: bool = False
) -> Iterator[Server]:
    port = free_port()
    command = [
        sys.executable, "-m", "bench.floor_server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), *(["--shared-socket"] if shared_socket else []),
        *(["--runtime-protocol"] if runtime_protocol else []),
    ]  # fmt: skip
    kind = FLOOR_RUNTIME_HTTP if runtime_protocol else FLOOR
    label = f"{kind}(w={workers}{',shared' if shared_socket else ''})"
    log = (log_dir / f"floor-{port}.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True, cwd=REPO)
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/", process, 60, "floor server")
        yield Server(label, port, f"/v2/models/{MODEL_NAME}/infer", process, ready)
    finally:
        stop_process(process)
        log.close()


def parse_mlserver_config(text: str) -> tuple[int, tuple[int, float] | None]:
    """``0`` or ``2:64/0.002`` (parallel workers, then max_batch_size/max_batch_time in seconds)."""
    workers, _, batching = text.partition(":")
    if not batching:
        return int(workers), None
    size, _, seconds = batching.partition("/")
    return int(workers), (int(size), float(seconds))


def bench_model(
    model: str, artifacts: dict[str, Path], args: argparse.Namespace, log_dir: Path, script: Path | None
) -> tuple[list[Measurement], dict[str, float]]:
    with ExitStack() as stack:
        servers = [
            stack.enter_context(runtime_server(artifacts[SKLEARN], args.workers, log_dir, SKLEARN)),
            stack.enter_context(runtime_server(artifacts[ONNX], args.workers, log_dir, ONNX)),
            stack.enter_context(floor_server(args.workers, log_dir)),
            stack.enter_context(floor_server(args.workers, log_dir, shared_socket=True)),
            stack.enter_context(floor_server(args.workers, log_dir, runtime_protocol=True)),
        ]
        if args.mlserver is not None:
            for config in args.mlserver_configs:
                workers, batching = parse_mlserver_config(config)
                servers.append(
                    stack.enter_context(
                        mlserver_server(artifacts[SKLEARN], workers, args.mlserver, log_dir, batching)
                    )
                )
        return measure_rounds(servers, model, args, script)


Medians = dict[str, tuple[float, float, float]]  # server label -> (req/s, p50 ms, p99 ms)


def medians(results: list[Measurement], model: str, concurrency: int) -> Medians:
    by_server: dict[str, list[Measurement]] = {}
    for result in results:
        if result.model == model and result.concurrency == concurrency:
            by_server.setdefault(result.server, []).append(result)
    return {
        label: (
            statistics.median(m.rps for m in runs),
            statistics.median(m.p50_ms for m in runs),
            statistics.median(m.p99_ms for m in runs),
        )
        for label, runs in by_server.items()
    }


def _kind(label: str) -> str:
    return label.split("(", 1)[0]


def _fastest(summary: Medians, kind: str) -> tuple[float, float, float] | None:
    """The medians of the configuration of ``kind`` with the most req/s (the floor has two)."""
    found = [value for label, value in summary.items() if _kind(label) == kind]
    return max(found, key=lambda value: value[0]) if found else None


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "n/a"


def summarise(
    results: list[Measurement], loads: dict[str, dict[str, float]], args: argparse.Namespace
) -> str:
    lines = [
        "",
        f"Medians over {args.rounds} round(s); {args.workers} worker(s) per server; load generator "
        f"{args.load_generator}; one row per request.",
        "",
        "| model | c | server | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    keys = sorted({(r.model, r.concurrency) for r in results})
    summaries = {key: medians(results, *key) for key in keys}
    for (model, concurrency), summary in summaries.items():
        for label, (rps, p50, p99) in summary.items():
            lines.append(f"| {model} | {concurrency} | {label} | {rps:.0f} | {p50:.2f} | {p99:.2f} |")
    lines += [
        "",
        "| model | c | MLServer best req/s (config) | MLServer best p99 ms (config) |",
        "|---|---|---|---|",
    ]
    for (model, concurrency), summary in summaries.items():
        peers = {label: value for label, value in summary.items() if _kind(label) == MLSERVER}
        if not peers:
            continue
        fastest = max(peers, key=lambda label: peers[label][0])
        steadiest = min(peers, key=lambda label: peers[label][2])
        lines.append(
            f"| {model} | {concurrency} | {peers[fastest][0]:.0f} ({fastest}) | "
            f"{peers[steadiest][2]:.2f} ({steadiest}) |"
        )
    lines += ["", "Targets (same-run ratios):", "", "| target | measured | met |", "|---|---|---|"]
    lines += target_rows(summaries)
    lines += ["", "| model | engine | load s (fresh interpreter, median) |", "|---|---|---|"]
    for model, engines in loads.items():
        for engine, seconds in engines.items():
            lines.append(f"| {model} | {engine} | {seconds:.3f} |")
    return "\n".join(lines)


def target_rows(summaries: dict[tuple[str, int], Medians]) -> list[str]:
    rows = []

    def row(target: str, value: float | None, goal: float, at_least: bool) -> None:
        shown = f"{value:.2f}x" if value is not None else "n/a"
        met = "n/a" if value is None else ("yes" if (value >= goal if at_least else value <= goal) else "NO")
        rows.append(f"| {target} | {shown} | {met} |")

    def rps(model: str, concurrency: int, kind: str) -> float | None:
        found = _fastest(summaries.get((model, concurrency), {}), kind)
        return found[0] if found else None

    for concurrency, goal in ((1, 10.0), (16, 2.0)):
        onnx, sklearn = rps("forest100", concurrency, ONNX), rps("forest100", concurrency, SKLEARN)
        value = onnx / sklearn if onnx and sklearn else None
        row(f"forest100 c={concurrency}: onnx / sklearn req/s ≥ {goal:g}x", value, goal, True)
    engines = [value for value in (rps("logreg", 16, ONNX), rps("logreg", 16, SKLEARN)) if value]
    floor = rps("logreg", 16, FLOOR)
    row(
        "logreg c=16: better engine / faster floor req/s ≥ 0.5x",
        max(engines) / floor if engines and floor else None,
        0.5,
        True,
    )
    floor_runtime_http = rps("logreg", 16, FLOOR_RUNTIME_HTTP)
    if engines and floor_runtime_http:  # not a target: the same floor on the runtime's HTTP protocol
        rows.append(
            f"| (not a target) logreg c=16: better engine / floor on the runtime's HTTP protocol | "
            f"{max(engines) / floor_runtime_http:.2f}x | - |"
        )
    for (model, concurrency), summary in summaries.items():
        if concurrency != 16:
            continue
        peers = [value[2] for label, value in summary.items() if _kind(label) == MLSERVER]
        for kind in (SKLEARN, ONNX):
            ours = _fastest(summary, kind)
            value = ours[2] / min(peers) if ours and peers else None
            row(f"{model} c=16: {kind} p99 / MLServer best p99 ≤ 0.5x", value, 0.5, False)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = measurement_parser(rounds=3, seconds=3.0)
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument(
        "--mlserver-configs",
        default=f"0,0:64/0.002,{cores}:64/0.002",
        help="comma-separated: parallel_workers[:max_batch_size/max_batch_time_seconds]",
    )
    parser.add_argument("--load-repeat", type=int, default=3, help="fresh-interpreter loads per engine")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    args.mlserver_configs = [value for value in args.mlserver_configs.split(",") if value]
    args.models = [value for value in args.models.split(",") if value]
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"--models: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(MODELS)}")
    if args.smoke:
        args.load_repeat = 1
    return finish_measurement_args(parser, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    all_results: list[Measurement] = []
    loads: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as scratch:
        directory = Path(scratch)
        script = None
        if args.load_generator == "wrk":
            script = directory / "post.lua"
            script.write_text(WRK_SCRIPT % BODY.decode())
        artifacts = package_models(directory / "packages", args.models)
        print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.1f} rounds={args.rounds}", flush=True)
        started = cpu_times()
        for model in args.models:
            loads[model] = {
                SKLEARN: load_seconds(artifacts[model][SKLEARN], "joblib", args.load_repeat),
                ONNX: load_seconds(artifacts[model][ONNX], "onnx", args.load_repeat),
            }
            results, _ = bench_model(model, artifacts[model], args, directory, script)
            all_results += results
        print(
            f"load average after the run: {os.getloadavg()[0]:.1f}; CPU time stolen by the hypervisor "
            f"during it: {stolen_share(started, cpu_times())}",
            flush=True,
        )
    print(summarise(all_results, loads, args))
    if args.json:
        document: dict[str, Any] = {"measurements": [asdict(r) for r in all_results], "load_seconds": loads}
        args.json.write_text(json.dumps(document, indent=2))
    errors = sum(
        r.errors for r in all_results if _kind(r.server) in (SKLEARN, ONNX, FLOOR, FLOOR_RUNTIME_HTTP)
    )
    if errors:
        print(f"{errors} requests to the runtime or the floor failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
