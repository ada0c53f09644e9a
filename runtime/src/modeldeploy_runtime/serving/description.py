"""What the protocols may know about the served model, without touching the estimator.

The data plane hands a :class:`ModelDescription` to the HTTP mappings (``protocols/``): names and
shapes for parsing requests and rendering responses, provenance for the V2 model metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelDescription:
    name: str
    version: str
    n_features: int | None  # None: the estimator does not say
    outputs: tuple[str, ...]  # the estimator methods a request may ask for
    classes: list[Any] | None  # None for regressors
    model_format: str
    sha256: str
    estimator_type: str
    artifact_sklearn_version: str
    warnings: tuple[str, ...]
    artifact_metadata: Mapping[str, Any] | None  # what packaging wrote beside the artifact
    engine: str = "sklearn"  # or "onnxruntime" (format onnx)
    provider: str = "cpu"  # where predictions run: "cpu", or "cuda" (ONNX Runtime's CUDA provider)
