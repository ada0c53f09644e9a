"""Test estimators the runtime subprocesses import by name (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


class SlowClassifier:
    """Predicts class 0 after sleeping for the largest first feature, in seconds (capped at 10)."""

    n_features_in_ = 2
    classes_ = np.array([0, 1])

    def fit(self, features: Any, labels: Any) -> SlowClassifier:
        return self

    def predict(self, features: Any) -> np.ndarray:
        rows = np.asarray(features, dtype=float)
        delay = float(np.clip(rows[:, 0].max(), 0.0, 10.0))
        if delay > 0:
            time.sleep(delay)
        return np.zeros(rows.shape[0], dtype=np.int64)


class PickleSideEffect:
    """Unpickling this object creates ``marker``: proof that deserialisation ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


class RowCounter:
    """Declares no feature count (no ``n_features_in_``) and predicts each row's length."""

    def predict(self, features: Any) -> np.ndarray:
        return np.full(np.asarray(features).shape[0], np.asarray(features).shape[1], dtype=np.int64)
