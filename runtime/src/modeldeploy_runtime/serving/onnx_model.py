"""The ONNX engine: serving ``model.onnx`` (from ``package --onnx``) with ONNX Runtime.

No pickle is read and scikit-learn is not imported: the file, checked against its sha256 before
ONNX Runtime parses it, carries what serving needs (classes, output names, the dtype scikit-learn's
``predict`` returned) under its ``modeldeploy`` metadata entry. :class:`OnnxPredictor` offers
``predict`` and ``predict_proba`` with scikit-learn's dtypes and shapes (labels in the classes'
dtype, probabilities as float64), so the protocols answer byte for byte in the same shape as for
the scikit-learn engine.

Each worker process gets its own session with ``intra_op_threads`` threads (default 1): workers
are the unit of parallelism, and more threads per worker would oversubscribe the cores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy_runtime.package_layout import ONNX_METADATA_KEY
from modeldeploy_runtime.serving.settings import OnnxProvider

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
PROVIDER_LABELS = {CPU_PROVIDER: "cpu", CUDA_PROVIDER: "cuda"}
PLATFORM = "onnxruntime_onnx"  # Triton's and KServe's name for this platform
ENGINE = "onnxruntime"


class OnnxLoadError(Exception):
    """The ONNX file cannot be served; one line."""


def gpu_visible(device_dir: Path = Path("/dev")) -> bool:
    """Whether an NVIDIA GPU is mounted into this container (the device plugin mounts /dev/nvidiaN)."""
    return any(path.name.removeprefix("nvidia").isdigit() for path in device_dir.glob("nvidia[0-9]*"))


def choose_providers(requested: OnnxProvider, available: Sequence[str], gpu: bool) -> list[str]:
    """ONNX Runtime providers in order of preference: CUDA when installed and a GPU is given, else CPU."""
    if requested == "cpu":
        return [CPU_PROVIDER]
    if requested == "cuda":
        if CUDA_PROVIDER not in available:
            raise OnnxLoadError(
                "--onnx-provider cuda: ONNX Runtime's CUDA provider is not installed "
                f"(available: {', '.join(available)}); install onnxruntime-gpu"
            )
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available and gpu else [CPU_PROVIDER]


@dataclass(frozen=True)
class ServingFacts:
    """The ``modeldeploy`` entry that ``package --onnx`` wrote into the ONNX file."""

    estimator: str
    n_features: int
    input_name: str
    output_names: dict[str, str]
    classes: list[Any] | None
    predict_dtype: str
    predict_ndim: int

    @classmethod
    def parse(cls, text: str | None, path: Path) -> ServingFacts:
        if text is None:
            raise OnnxLoadError(
                f"{path} has no {ONNX_METADATA_KEY!r} metadata entry; build it with `package --onnx`"
            )
        try:
            document = json.loads(text)
            return cls(
                estimator=str(document["estimator"]),
                n_features=int(document["n_features"]),
                input_name=str(document["input"]),
                output_names={str(key): str(value) for key, value in dict(document["outputs"]).items()},
                classes=list(document["classes"]) if document["classes"] is not None else None,
                predict_dtype=str(document["predict_dtype"]),
                predict_ndim=int(document["predict_ndim"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise OnnxLoadError(f"{path}: unreadable {ONNX_METADATA_KEY!r} metadata entry: {error}") from None


class OnnxPredictor:
    """``predict``/``predict_proba`` over an ONNX Runtime session, with scikit-learn's dtypes and shapes.

    The supervisor opens a session to check the file before forking; each worker process then
    opens its own on first use, since a session's thread pools do not survive ``fork``.
    """

    def __init__(self, session: Any, open_new: Callable[[], Any], facts: ServingFacts) -> None:
        self._open_new = open_new
        self._session = session
        self._pid = os.getpid()
        self._input = facts.input_name
        self._predict = facts.output_names["predict"]
        self._proba = facts.output_names.get("predict_proba", "")
        self._dtype = None if facts.predict_dtype == "str" else np.dtype(facts.predict_dtype)
        self._ndim = facts.predict_ndim
        self.estimator_name = facts.estimator.rsplit(".", 1)[-1]
        self.provider = str(self._session.get_providers()[0])
        if self._proba:
            self.predict_proba = self._predict_proba

    @property
    def session(self) -> Any:
        """This process's session (a forked worker opens its own)."""
        if self._pid != os.getpid():
            self._session, self._pid = self._open_new(), os.getpid()
        return self._session

    def _run(self, name: str, features: np.ndarray) -> np.ndarray:
        (result,) = self.session.run([name], {self._input: features.astype(np.float32, copy=False)})
        return np.asarray(result)

    def predict(self, features: np.ndarray) -> np.ndarray:
        labels = self._run(self._predict, features)
        if self._ndim == 1 and labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.reshape(-1)
        return labels if self._dtype is None else labels.astype(self._dtype, copy=False)

    def _predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self._run(self._proba, features).astype(np.float64)


def open_session(
    data: bytes, path: Path, *, threads: int, provider: OnnxProvider
) -> tuple[OnnxPredictor, ServingFacts]:
    """A predictor for the ONNX model in ``data`` (already checked against its digest)."""
    import onnxruntime  # noqa: PLC0415 - only the ONNX format needs it

    providers = choose_providers(provider, onnxruntime.get_available_providers(), gpu_visible())

    def open_new() -> Any:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        return onnxruntime.InferenceSession(data, options, providers=providers)

    try:
        session = open_new()
    except Exception as error:
        message = " ".join(str(error).split())[:300]
        raise OnnxLoadError(f"cannot load {path} with ONNX Runtime: {message}") from None
    facts = ServingFacts.parse(session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY), path)
    return OnnxPredictor(session, open_new, facts), facts
