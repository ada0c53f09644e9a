"""The ONNX engine: the same answers as the scikit-learn engine, no pickle, digests as for joblib.

Each model is packaged once with ``package(..., onnx_sample=...)`` and served twice by real
``modeldeploy-runtime serve`` processes on loopback: its joblib artifact (scikit-learn engine) and
its ``model.onnx`` (ONNX Runtime). Both get the same V2 and V1 requests; shapes, datatypes and
labels must be identical and probabilities within the tolerance recorded at packaging.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modeldeploy_runtime.package_layout import Package
from modeldeploy_runtime.packaging.build import package
from modeldeploy_runtime.serving.onnx_model import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    OnnxLoadError,
    choose_providers,
    gpu_visible,
    open_session,
)
from tests.runtime.conftest import (
    REPO,
    RuntimeProcess,
    launch_runtime,
    run_runtime,
    runtime_env,
    v2_body,
)
from tests.support import free_port, wait_until

WRONG_DIGEST = "0" * 64
FEATURES, LABELS = load_iris(return_X_y=True)
ROWS = FEATURES[::7].tolist()  # 22 rows of all three classes


def _models() -> dict[str, Any]:
    return {
        "logreg": LogisticRegression(max_iter=1000).fit(FEATURES, LABELS),
        "forest": RandomForestClassifier(n_estimators=20, random_state=0).fit(FEATURES, LABELS),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(FEATURES, LABELS),
        "regressor": LinearRegression().fit(FEATURES, LABELS.astype(np.float64)),
        "strings": LogisticRegression(max_iter=1000).fit(FEATURES, np.array(["a", "b", "c"])[LABELS]),
    }


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Package]:
    directory = tmp_path_factory.mktemp("onnx-packages")
    return {
        name: package(model, directory, name=name, version="1", onnx_sample=FEATURES)
        for name, model in _models().items()
    }


@dataclass
class EnginePair:
    sklearn: RuntimeProcess
    onnx: RuntimeProcess
    package: Package


@pytest.fixture(scope="module")
def served(
    packages: dict[str, Package], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, EnginePair]]:
    log_dir = tmp_path_factory.mktemp("onnx-runtimes")
    pairs: dict[str, EnginePair] = {}
    try:
        for name, written in packages.items():
            assert written.onnx_artifact is not None
            common: dict[str, Any] = {"model_name": name, "model_version": "v1"}
            sklearn_runtime = launch_runtime(log_dir, wait=False, model_uri=written.artifact, **common)
            onnx_runtime = launch_runtime(
                log_dir,
                wait=False,
                model_uri=written.onnx_artifact,
                model_sha256=written.metadata["onnx"]["sha256"],
                **common,
            )
            pairs[name] = EnginePair(sklearn_runtime, onnx_runtime, written)
        for pair in pairs.values():
            pair.sklearn.wait_ready(120)
            pair.onnx.wait_ready(120)
        yield pairs
    finally:
        for pair in pairs.values():
            pair.sklearn.stop()
            pair.onnx.stop()


def _outputs(name: str) -> list[dict[str, str]]:
    return [{"name": "predict"}] + ([] if name == "regressor" else [{"name": "predict_proba"}])


def _same_answer(name: str, sklearn_answer: Any, onnx_answer: Any, tolerance: float) -> None:
    """Equal except numbers that are probabilities (or a regressor's values): those within tolerance."""
    if isinstance(sklearn_answer, dict):
        assert sklearn_answer.keys() == onnx_answer.keys()
        for key in sklearn_answer:
            _same_answer(name, sklearn_answer[key], onnx_answer[key], tolerance)
    elif isinstance(sklearn_answer, list):
        assert len(sklearn_answer) == len(onnx_answer)
        for left, right in zip(sklearn_answer, onnx_answer, strict=True):
            _same_answer(name, left, right, tolerance)
    elif isinstance(sklearn_answer, float):
        assert isinstance(onnx_answer, float)
        assert abs(sklearn_answer - onnx_answer) <= tolerance * max(1.0, abs(sklearn_answer))
    else:
        assert type(sklearn_answer) is type(onnx_answer)
        assert sklearn_answer == onnx_answer


@pytest.mark.parametrize("name", ["logreg", "forest", "pipeline", "regressor", "strings"])
def test_served_outputs_equal_the_sklearn_engines(name: str, served: dict[str, EnginePair]) -> None:
    pair = served[name]
    tolerance = pair.package.metadata["onnx"]["tolerance"]
    requests = [
        (f"/v2/models/{name}/infer", v2_body(ROWS, id="r1", outputs=_outputs(name))),
        (f"/v2/models/{name}/infer", v2_body(ROWS[:1])),
        (f"/v1/models/{name}:predict", {"instances": ROWS}),
    ]
    for path, body in requests:
        expected = pair.sklearn.client.post(path, json=body)
        got = pair.onnx.client.post(path, json=body)
        assert (got.status_code, expected.status_code) == (200, 200), got.text
        _same_answer(name, expected.json(), got.json(), tolerance)
    # Labels (and their datatype) are the very same; a wrong row count is refused the same way.
    infer = pair.onnx.client.post(f"/v2/models/{name}/infer", json=v2_body(ROWS)).json()
    assert infer["outputs"][0]["datatype"] == {"regressor": "FP64", "strings": "BYTES"}.get(name, "INT64")
    bad = {"instances": [[1.0, 2.0]]}
    expected_error = pair.sklearn.client.post(f"/v1/models/{name}:predict", json=bad)
    got_error = pair.onnx.client.post(f"/v1/models/{name}:predict", json=bad)
    assert (got_error.status_code, got_error.json()) == (expected_error.status_code, expected_error.json())


def test_metadata_and_metrics_name_the_engine_and_provider(served: dict[str, EnginePair]) -> None:
    pair = served["logreg"]
    metadata = pair.onnx.client.get("/v2/models/logreg").json()
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["parameters"]["engine"] == "onnxruntime"
    assert metadata["parameters"]["provider"] == "cpu"
    assert metadata["parameters"]["estimator"] == "LogisticRegression"
    assert metadata["parameters"]["sha256"] == pair.package.metadata["onnx"]["sha256"]
    sklearn_metadata = pair.sklearn.client.get("/v2/models/logreg").json()
    assert (sklearn_metadata["platform"], sklearn_metadata["parameters"]["engine"]) == ("sklearn", "sklearn")
    assert metadata["outputs"] == sklearn_metadata["outputs"]
    assert 'engine="onnxruntime"' in pair.onnx.metrics()
    assert 'provider="cpu"' in pair.onnx.metrics()


def test_concurrent_requests_are_micro_batched(served: dict[str, EnginePair]) -> None:
    runtime = served["forest"].onnx
    body = v2_body(ROWS[:1])

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=runtime.url, timeout=30.0) as client:
            for _ in range(5):
                answers = await asyncio.gather(
                    *(client.post("/v2/models/forest/infer", json=body) for _ in range(48))
                )
            return [answer.status_code for answer in answers]

    assert set(asyncio.run(burst())) == {200}

    def batch_samples() -> dict[str, float] | None:
        samples = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in runtime.metrics().splitlines()
            if line.startswith("modeldeploy_batch_size_")
        }
        rows = samples.get('modeldeploy_batch_size_sum{model="forest"}', 0.0)
        return samples if rows >= 240 else None  # the worker writes its counts every FLUSH_SECONDS

    samples = wait_until("the 240 rows in the batch-size metric", batch_samples, 10, interval=0.05)
    batches = samples['modeldeploy_batch_size_count{model="forest"}']
    rows = samples['modeldeploy_batch_size_sum{model="forest"}']
    assert batches < rows, "every request was predicted on its own: no micro-batching"


def _serve_until_exit(*flags: str) -> subprocess.CompletedProcess[str]:
    return run_runtime(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--metrics-port", "0", *flags
    )


def test_digest_mismatch_is_refused_before_onnx_runtime_reads_it(packages: dict[str, Package]) -> None:
    onnx_file = packages["logreg"].onnx_artifact
    assert onnx_file is not None
    result = _serve_until_exit("--model-uri", str(onnx_file), "--model-sha256", WRONG_DIGEST)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "sha256 mismatch" in last
    assert WRONG_DIGEST in last
    assert packages["logreg"].metadata["onnx"]["sha256"] in last
    assert "Traceback" not in result.stderr


def test_an_onnx_file_without_our_metadata_is_refused(tmp_path: Path) -> None:
    from skl2onnx import to_onnx  # noqa: PLC0415

    plain = tmp_path / "plain.onnx"
    model = LogisticRegression(max_iter=1000).fit(FEATURES, LABELS)
    plain.write_bytes(to_onnx(model, FEATURES[:1].astype(np.float32)).SerializeToString())
    result = _serve_until_exit("--model-uri", str(plain))
    assert result.returncode == 1
    assert "has no 'modeldeploy' metadata entry; build it with `package --onnx`" in result.stderr


SERVING_IMPORTS = """
import sys
from modeldeploy_runtime.cli import main  # the serve command's module graph
from modeldeploy_runtime.serving import server  # noqa: F401
from modeldeploy_runtime.serving.factory import load_configured_model
from modeldeploy_runtime.serving.settings import RuntimeSettings
import numpy as np
model = load_configured_model(RuntimeSettings(model_uri=sys.argv[1], model_sha256=sys.argv[2]))
print(model.run(np.zeros((2, 4)), frozenset(["predict", "predict_proba"]))["predict"].tolist())
print(sorted(name for name in sys.modules if name.split(".")[0] in ("sklearn", "scipy", "joblib", "skops")))
"""


def test_serving_onnx_imports_no_scikit_learn_and_reads_no_pickle(packages: dict[str, Package]) -> None:
    written = packages["pipeline"]
    assert written.onnx_artifact is not None
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVING_IMPORTS,
            str(written.onnx_artifact),
            written.metadata["onnx"]["sha256"],
        ],
        cwd=REPO,
        env=runtime_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    predicted, imported = result.stdout.strip().splitlines()
    assert json.loads(predicted) == [0, 0]
    assert imported == "[]", f"the ONNX path imported {imported}"


def test_providers_cuda_only_when_installed_and_a_gpu_is_mounted(tmp_path: Path) -> None:
    both = [CUDA_PROVIDER, CPU_PROVIDER]
    assert choose_providers("auto", both, gpu=True) == both
    assert choose_providers("auto", both, gpu=False) == [CPU_PROVIDER]
    assert choose_providers("auto", [CPU_PROVIDER], gpu=True) == [CPU_PROVIDER]
    assert choose_providers("cpu", both, gpu=True) == [CPU_PROVIDER]
    assert choose_providers("cuda", both, gpu=False) == both
    with pytest.raises(OnnxLoadError, match="CUDA provider is not installed"):
        choose_providers("cuda", [CPU_PROVIDER], gpu=True)
    assert not gpu_visible(tmp_path)
    (tmp_path / "nvidiactl").touch()
    assert not gpu_visible(tmp_path)
    (tmp_path / "nvidia0").touch()
    assert gpu_visible(tmp_path)


def test_intra_op_threads_are_one_by_default_and_configurable(packages: dict[str, Package]) -> None:
    onnx_file = packages["logreg"].onnx_artifact
    assert onnx_file is not None
    for threads in (1, 3):
        predictor, _ = open_session(onnx_file.read_bytes(), onnx_file, threads=threads, provider="auto")
        options = predictor.session.get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (threads, 1)


def test_threads_flag_reaches_the_settings() -> None:
    result = run_runtime("serve", "--model-uri", "/m.onnx", "--onnx-threads", "0")
    assert result.returncode == 2
    assert "--onnx-threads / MODELDEPLOY_ONNX_THREADS" in result.stderr
