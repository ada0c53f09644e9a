"""``package()``: artifacts the runtime's own loader accepts, with the metadata it reads."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
import skops
import skops.io
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from modeldeploy_runtime.files import sha256_file
from modeldeploy_runtime.package_layout import PackagingError, read_package
from modeldeploy_runtime.packaging.build import load_estimator, package
from modeldeploy_runtime.serving.model import ModelLoadError, load_model
from tests.packaging.conftest import FOREST_TREE_TYPE


def test_joblib_round_trip_through_the_runtime_loader_predicts_the_same(
    tmp_path: Path, logistic: LogisticRegression, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    written = package(logistic, tmp_path, name="iris", version="1.0.0")

    assert written.artifact == tmp_path / "iris" / "1.0.0" / "model.joblib"
    loaded = load_model(
        written.artifact,
        name="iris",
        version="1.0.0",
        model_format="joblib",
        expected_sha256=written.metadata["sha256"],
        trusted_types=[],
    )
    features = iris[0]
    np.testing.assert_array_equal(loaded.estimator.predict(features), logistic.predict(features))
    np.testing.assert_array_equal(loaded.estimator.predict_proba(features), logistic.predict_proba(features))
    # The loader found the metadata file and read the versions we wrote: no mismatch warnings.
    assert loaded.metadata is not None
    assert loaded.metadata.sklearn_version == sklearn.__version__
    assert loaded.metadata.joblib_version == joblib.__version__
    assert loaded.warnings == []


def test_skops_round_trip_needs_the_same_trusted_types_as_the_runtime(
    tmp_path: Path, forest: RandomForestClassifier, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    with pytest.raises(PackagingError, match=f"does not trust by default: {FOREST_TREE_TYPE};"):
        package(forest, tmp_path, name="forest", version="1", format="skops")
    assert not (tmp_path / "forest" / "1").exists()

    written = package(
        forest, tmp_path, name="forest", version="1", format="skops", trusted_types=[FOREST_TREE_TYPE]
    )

    assert written.artifact.name == "model.skops"
    with pytest.raises(ModelLoadError, match="not trusted"):
        load_model(
            written.artifact,
            name="forest",
            version="1",
            model_format="skops",
            expected_sha256=None,
            trusted_types=[],
        )
    loaded = load_model(
        written.artifact,
        name="forest",
        version="1",
        model_format="skops",
        expected_sha256=written.metadata["sha256"],
        trusted_types=[FOREST_TREE_TYPE],
    )
    np.testing.assert_array_equal(loaded.estimator.predict(iris[0]), forest.predict(iris[0]))


def test_metadata_records_digest_size_versions_shape_and_user_values(
    tmp_path: Path, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    model = LogisticRegression(max_iter=500).fit(
        iris[0], np.array(["setosa", "versicolor", "virginica"])[iris[1]]
    )
    model.feature_names_in_ = np.array(["sepal_l", "sepal_w", "petal_l", "petal_w"], dtype=object)

    written = package(model, tmp_path, name="iris", version="2", metadata={"team": "ds", "auc": 0.97})

    on_disk = json.loads((tmp_path / "iris" / "2" / "model.joblib.metadata.json").read_text())
    assert on_disk == written.metadata
    assert on_disk["name"] == "iris"
    assert on_disk["version"] == "2"
    assert on_disk["format"] == "joblib"
    assert on_disk["artifact"] == "model.joblib"
    assert on_disk["sha256"] == sha256_file(written.artifact)
    assert on_disk["size_bytes"] == written.artifact.stat().st_size
    assert on_disk["model_type"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert on_disk["n_features_in"] == 4
    assert on_disk["feature_names_in"] == ["sepal_l", "sepal_w", "petal_l", "petal_w"]
    assert on_disk["classes"] == ["setosa", "versicolor", "virginica"]
    assert on_disk["metadata"] == {"team": "ds", "auc": 0.97}
    assert on_disk["versions"] == {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "numpy": np.__version__,
        "skops": skops.__version__,
    }
    assert on_disk["created_at"].endswith("Z")
    assert on_disk["created_at"][:4].isdigit()


def test_regressor_metadata_has_no_classes(tmp_path: Path, iris: tuple[np.ndarray, np.ndarray]) -> None:
    written = package(LinearRegression().fit(*iris), tmp_path, name="reg", version="1")

    assert written.metadata["classes"] is None
    assert written.metadata["feature_names_in"] is None
    assert written.metadata["n_features_in"] == 4


def test_an_existing_version_is_never_overwritten(tmp_path: Path, logistic: LogisticRegression) -> None:
    first = package(logistic, tmp_path, name="iris", version="1")
    before = first.artifact.read_bytes(), first.metadata_path.read_bytes()

    other = LogisticRegression(max_iter=50).fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(PackagingError, match="already exists; a packaged version is never overwritten"):
        package(other, tmp_path, name="iris", version="1")

    assert (first.artifact.read_bytes(), first.metadata_path.read_bytes()) == before
    assert sorted(path.name for path in (tmp_path / "iris").iterdir()) == ["1"]  # no temporary left


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"weights": [1, 2]}, "holds a builtins.dict, not a scikit-learn estimator"),
        (LogisticRegression(), "holds an unfitted LogisticRegression; fit it first"),
    ],
)
def test_non_estimators_and_unfitted_models_are_refused(tmp_path: Path, model: object, message: str) -> None:
    with pytest.raises(PackagingError, match=message):
        package(model, tmp_path, name="iris", version="1")
    assert not (tmp_path / "iris" / "1").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "onnx"}, "unknown format 'onnx': expected one of joblib, skops"),
        ({"name": "../escape"}, "name '../escape' is not valid"),
        ({"version": "1/2"}, "version '1/2' is not valid"),
        ({"metadata": {"when": object()}}, "metadata must be JSON-serialisable"),
    ],
)
def test_bad_arguments_are_refused_before_writing(
    tmp_path: Path, logistic: LogisticRegression, options: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"name": "iris", "version": "1", **options}
    with pytest.raises(PackagingError, match=message):
        package(logistic, tmp_path / "out", **arguments)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_read_package_catches_an_artifact_changed_after_packaging(
    tmp_path: Path, logistic: LogisticRegression
) -> None:
    written = package(logistic, tmp_path, name="iris", version="1")
    assert read_package(written.directory).metadata["sha256"] == written.metadata["sha256"]

    with written.artifact.open("ab") as artifact:
        artifact.write(b"\0")

    with pytest.raises(PackagingError, match="changed after packaging"):
        read_package(written.directory)


def test_load_estimator_reads_pickles_and_checks_skops_trust(
    tmp_path: Path, pickled_model: Path, forest: RandomForestClassifier
) -> None:
    assert isinstance(load_estimator(pickled_model), LogisticRegression)
    skops_file = tmp_path / "forest.skops"
    skops.io.dump(forest, skops_file)

    with pytest.raises(PackagingError, match=f"not trusted: {FOREST_TREE_TYPE}"):
        load_estimator(skops_file)
    assert isinstance(load_estimator(skops_file, [FOREST_TREE_TYPE]), RandomForestClassifier)


def test_a_model_joblib_cannot_pickle_is_refused_without_a_partial_package(tmp_path: Path) -> None:
    unpicklable = LogisticRegression(max_iter=500).fit(np.eye(4), [0, 1, 0, 1])
    unpicklable.callback = lambda: None

    with pytest.raises(PackagingError, match="joblib cannot serialise this model"):
        package(unpicklable, tmp_path, name="iris", version="1")
    assert not (tmp_path / "iris" / "1").exists()
