"""The sample iris models (versions 1 and 2) in an S3-compatible store on loopback.

The store is moto's standalone server (MinIO is AGPL and not used); ``make dev`` and the contract
tests both use it, exactly as a cluster would use S3: the operator renders an init container that
fetches ``s3://models/iris/<version>/model.joblib`` with the credentials of a Secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modeldeploy_devenv.loopback_moto import s3_client

BUCKET = "models"
IRIS_SETOSA_ROW = [5.1, 3.5, 1.4, 0.2]


def upload_sample_models(endpoint: str, workdir: Path) -> dict[str, str]:
    """Train and package iris as versions 1 and 2; upload both; return {version: sha256}."""
    from sklearn.datasets import load_iris  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.tree import DecisionTreeClassifier  # noqa: PLC0415

    features, labels = load_iris(return_X_y=True)
    estimators = {
        "1": LogisticRegression(max_iter=500).fit(features, labels),
        "2": DecisionTreeClassifier(random_state=0).fit(features, labels),
    }
    s3_client(endpoint).create_bucket(Bucket=BUCKET)
    return upload_models(endpoint, workdir, estimators)


def upload_models(endpoint: str, workdir: Path, estimators: Mapping[str, Any]) -> dict[str, str]:
    """Package each estimator as iris@<version> into the existing bucket; return {version: sha256}."""
    from modeldeploy_runtime.packaging import package  # noqa: PLC0415

    s3 = s3_client(endpoint)
    digests = {}
    for version, estimator in estimators.items():
        packaged = package(estimator, workdir / version, name="iris", version=version)
        artifact = Path(packaged.artifact)
        for path in (artifact, artifact.with_name(artifact.name + ".metadata.json")):
            s3.upload_file(str(path), BUCKET, f"iris/{version}/{path.name}")
        digests[version] = hashlib.sha256(artifact.read_bytes()).hexdigest()
    return digests


ONNX_SAMPLE_KEY = "iris-onnx/1/model.onnx"


def upload_onnx_sample_model(endpoint: str, workdir: Path) -> str:
    """Package iris (logistic regression) with its ONNX form; upload ``model.onnx`` to
    ``s3://models/iris-onnx/1/``; return its sha256. The bucket is ``upload_sample_models``'."""
    from sklearn.datasets import load_iris  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    from modeldeploy_runtime.package_layout import ONNX_ARTIFACT  # noqa: PLC0415
    from modeldeploy_runtime.packaging import package  # noqa: PLC0415

    features, labels = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=500).fit(features, labels)
    packaged = package(estimator, workdir / "onnx", name="iris", version="1", onnx_sample=features[:30])
    onnx_file = packaged.directory / ONNX_ARTIFACT
    s3_client(endpoint).upload_file(str(onnx_file), BUCKET, ONNX_SAMPLE_KEY)
    return hashlib.sha256(onnx_file.read_bytes()).hexdigest()
