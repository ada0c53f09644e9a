"""Where a worker's CPU goes per inference request, without HTTP: the runtime's ASGI app in-process.

``--concurrency`` clients call the app on one uvloop event loop with a ready-made one-row V2
request, as uvicorn does once it has parsed the HTTP; the app's lifespan runs as in a worker
(warm-up, batcher, metrics flushes). Each variant swaps one part of the path for a canned
stand-in, so its difference to ``full`` is what that part costs per request:

- ``parse``: V2 decoding and validation (the request is parsed once, up front);
- ``render``: the V2 response;
- ``dataplane``: batching, the model call and the wait for it (results come back at once);
- ``model``: the model call alone (the batcher still runs).

Each variant runs in a fresh interpreter; the figure is CPU time per request, the minimum over
rounds (noise on a shared machine only ever adds). The HTTP stack is not in it: compare
``compiled_inference``'s floor server for that.

    .venv/bin/python -m bench.request_path --engine onnx --concurrency 8 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import uvloop
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from bench.runtime_vs_mlserver import BODY, MODEL_NAME
from modeldeploy_runtime.files import sha256_file
from modeldeploy_runtime.package_layout import ModelFormat
from modeldeploy_runtime.packaging.build import package
from modeldeploy_runtime.serving.app import Message
from modeldeploy_runtime.serving.factory import ServingApp, build_app
from modeldeploy_runtime.serving.model import load_model
from modeldeploy_runtime.serving.protocols import v2
from modeldeploy_runtime.serving.settings import RuntimeSettings

FORMATS: dict[str, ModelFormat] = {"onnx": "onnx", "sklearn": "joblib"}
CANNED_RESULTS = {"predict": np.zeros(1, dtype=np.int64)}
CANNED_RESPONSE = b'{"model_name":"iris","outputs":[]}'


def _replace(module: object, name: str, stand_in: object) -> None:
    setattr(module, name, stand_in)  # the app looks protocol functions up on their module per request


def _canned_parse(serving: ServingApp) -> None:
    parsed = v2.parse_infer_request(BODY, serving.dataplane.description)
    _replace(v2, "parse_infer_request", lambda body, model: parsed)


def _canned_render(serving: ServingApp) -> None:
    _replace(v2, "render_infer_response", lambda model, request, results: CANNED_RESPONSE)


def _canned_dataplane(serving: ServingApp) -> None:
    async def infer(features: np.ndarray, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        return CANNED_RESULTS

    _replace(serving.dataplane, "infer", infer)


def _canned_model(serving: ServingApp) -> None:
    def run(features: np.ndarray, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        return {"predict": np.zeros(features.shape[0], dtype=np.int64)}

    _replace(serving.dataplane._model, "run", run)


STAND_INS: dict[str, Callable[[ServingApp], None] | None] = {
    "full": None,
    "parse": _canned_parse,
    "render": _canned_render,
    "dataplane": _canned_dataplane,
    "model": _canned_model,
}


def _serving(engine: str, workdir: Path) -> ServingApp:
    features, labels = load_iris(return_X_y=True)
    written = package(
        LogisticRegression(max_iter=1000).fit(features, labels),
        workdir,
        name=MODEL_NAME,
        version="1",
        onnx_sample=features,
    )
    artifact = written.onnx_artifact if engine == "onnx" else written.artifact
    assert artifact is not None
    model = load_model(
        artifact,
        name=MODEL_NAME,
        version="1",
        model_format=FORMATS[engine],
        expected_sha256=sha256_file(artifact),
        trusted_types=[],
    )
    settings = RuntimeSettings.model_validate({"model_uri": str(artifact), "model_name": MODEL_NAME})
    return build_app(settings, model, None)


async def _drive(serving: ServingApp, concurrency: int, requests: int, rounds: int) -> list[float]:
    scope: Message = {
        "type": "http",
        "method": "POST",
        "path": f"/v2/models/{MODEL_NAME}/infer",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
    }
    request: Message = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive() -> Message:
        return request

    async def send(message: Message) -> None:
        return None

    async def client() -> None:
        for _ in range(requests):
            await serving.app(scope, receive, send)

    lifespan: asyncio.Queue[Message] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(message: Message) -> None:
        started.set()

    lifespan.put_nowait({"type": "lifespan.startup"})
    running = asyncio.create_task(serving.app({"type": "lifespan"}, lifespan.get, lifespan_send))
    await started.wait()
    await asyncio.gather(*(client() for _ in range(concurrency)))  # warm-up round: cheap-call detection
    per_request = []
    for _ in range(rounds):
        cpu = time.process_time()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        per_request.append((time.process_time() - cpu) / (requests * concurrency) * 1e6)
    lifespan.put_nowait({"type": "lifespan.shutdown"})
    await running
    return per_request


def run_variant(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        serving = _serving(args.engine, Path(workdir))
        stand_in = STAND_INS[args.variant]
        if stand_in is not None:
            stand_in(serving)
        print(json.dumps(uvloop.run(_drive(serving, args.concurrency, args.requests, args.rounds))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--engine", choices=["onnx", "sklearn"], default="onnx")
    parser.add_argument("--concurrency", type=int, default=8, help="clients on the event loop")
    parser.add_argument("--requests", type=int, default=3000, help="per client and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variant", choices=list(STAND_INS), help="run one variant here (internal)")
    args = parser.parse_args(argv)
    if args.variant is not None:
        run_variant(args)
        return 0
    full = None
    print(f"{args.engine}, {args.concurrency} clients: CPU µs per request (min of {args.rounds} rounds)")
    for variant in STAND_INS:
        command = [sys.executable, "-m", "bench.request_path", *(argv or sys.argv[1:]), "--variant", variant]
        best = min(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
        full = best if full is None else full
        share = "" if variant == "full" else f"  ({variant} costs {full - best:5.1f})"
        print(f"  {variant:10s} {best:6.1f}{share}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
