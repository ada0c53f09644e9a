"""``package --onnx``: conversion, verified equivalence, refusals that write nothing, and the registry."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading

from modeldeploy_runtime.fetch import fetch_artifact
from modeldeploy_runtime.files import sha256_file
from modeldeploy_runtime.package_layout import PackagingError, read_package
from modeldeploy_runtime.packaging import cli as registry_cli
from modeldeploy_runtime.packaging.build import package
from modeldeploy_runtime.packaging.registry import RegistryError, parse_reference, verify
from modeldeploy_runtime.packaging.registry_store import open_store
from modeldeploy_runtime.serving.model import load_model
from tests.packaging.conftest import run_cli

Iris = tuple[np.ndarray, np.ndarray]


def _sample_csv(path: Path, rows: np.ndarray, header: bool = True) -> Path:
    lines = (["a,b,c,d"] if header else []) + [",".join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _only_children(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def test_package_onnx_writes_a_verified_model_beside_the_artifact(
    tmp_path: Path, pickled_model: Path, iris: Iris
) -> None:
    sample = _sample_csv(tmp_path / "sample.csv", iris[0])
    result = run_cli(
        "package", str(pickled_model), "--name", "iris", "--version", "1", "--out", str(tmp_path / "dist"),
        "--onnx", "--sample", str(sample),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    directory = Path(result.stdout.strip())
    assert _only_children(directory) == ["model.joblib", "model.joblib.metadata.json", "model.onnx"]
    metadata = read_package(directory).metadata
    onnx = metadata["onnx"]
    assert onnx["artifact"] == "model.onnx"
    assert onnx["sha256"] == sha256_file(directory / "model.onnx")
    assert onnx["sample_rows"] == len(iris[0])
    assert 0 <= onnx["max_deviation"] <= onnx["tolerance"] == 1e-4
    assert onnx["input_dtype"] == "float32"
    assert set(onnx["versions"]) == {"skl2onnx", "onnx", "onnxruntime"}


def test_npy_sample_and_tolerance_flag(tmp_path: Path, pickled_model: Path, iris: Iris) -> None:
    np.save(tmp_path / "sample.npy", iris[0][:20])
    result = run_cli(
        "package", str(pickled_model), "--name", "iris", "--version", "1", "--out", str(tmp_path / "dist"),
        "--onnx", "--sample", str(tmp_path / "sample.npy"), "--onnx-tolerance", "0.01",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    onnx = read_package(Path(result.stdout.strip())).metadata["onnx"]
    assert (onnx["tolerance"], onnx["sample_rows"]) == (0.01, 20)


def test_onnx_without_sample_rows_is_refused(tmp_path: Path, pickled_model: Path) -> None:
    result = run_cli(
        "package", str(pickled_model), "--name", "iris", "--version", "1", "--out", str(tmp_path / "dist"), "--onnx"
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "modeldeploy-runtime: error: --onnx needs --sample FILE (a CSV or .npy of rows like those the model "
        "will serve): equivalence is only proven on real inputs"
    )
    assert not (tmp_path / "dist").exists()


def test_sample_with_the_wrong_columns_is_refused(tmp_path: Path, pickled_model: Path, iris: Iris) -> None:
    sample = _sample_csv(tmp_path / "sample.csv", iris[0][:, :3], header=False)
    result = run_cli(
        "package", str(pickled_model), "--name", "iris", "--version", "1", "--out", str(tmp_path / "dist"),
        "--onnx", "--sample", str(sample),
    )  # fmt: skip
    assert result.returncode == 1
    assert "has 3 columns; the model takes 4 features" in result.stderr


def test_a_model_whose_onnx_form_predicts_other_labels_is_refused(tmp_path: Path) -> None:
    """float32 cannot tell 1e8 from 1e8+1: scikit-learn (float64) can, so the labels differ."""
    rows = np.column_stack([1e8 + np.arange(200) % 2, np.linspace(0, 1, 200)])
    labels = np.arange(200) % 2
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(rows, labels)
    joblib.dump(model, tmp_path / "model.joblib")
    np.save(tmp_path / "sample.npy", rows)
    result = run_cli(
        "package", str(tmp_path / "model.joblib"), "--name", "big", "--version", "1", "--out",
        str(tmp_path / "dist"), "--onnx", "--sample", str(tmp_path / "sample.npy"),
    )  # fmt: skip
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert (
        "ONNX form of Pipeline(scale=StandardScaler, clf=LogisticRegression) predicts other labels" in message
    )
    assert "of 200 sample rows (max probability deviation" in message
    assert message.endswith("nothing written")
    assert _only_children(tmp_path / "dist" / "big") == []


def test_a_deviation_over_the_tolerance_is_refused_and_named(
    logistic: LogisticRegression, iris: Iris, tmp_path: Path
) -> None:
    with pytest.raises(
        PackagingError, match=r"ONNX form of LogisticRegression deviates by up to [0-9.e-]+ .* tolerance 0;"
    ):
        package(logistic, tmp_path, name="iris", version="1", onnx_sample=iris[0], onnx_tolerance=0.0)
    assert _only_children(tmp_path / "iris") == []


def test_a_step_without_a_converter_is_refused_by_name(tmp_path: Path, iris: Iris) -> None:
    model = Pipeline([("scale", StandardScaler()), ("spread", LabelSpreading())]).fit(*iris)
    joblib.dump(model, tmp_path / "model.joblib")
    sample = _sample_csv(tmp_path / "sample.csv", iris[0])
    result = run_cli(
        "package", str(tmp_path / "model.joblib"), "--name", "iris", "--version", "1", "--out",
        str(tmp_path / "dist"), "--onnx", "--sample", str(sample),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "modeldeploy-runtime: error: cannot convert Pipeline(scale=StandardScaler, spread=LabelSpreading) to "
        "ONNX: skl2onnx has no converter for step 'spread' (LabelSpreading); nothing written"
    )
    assert _only_children(tmp_path / "dist" / "iris") == []


def test_registry_records_and_resolves_the_onnx_artifact(
    tmp_path: Path, logistic: LogisticRegression, iris: Iris, capsys: pytest.CaptureFixture[str]
) -> None:
    written = package(logistic, tmp_path / "dist", name="iris", version="2", onnx_sample=iris[0])
    root = str(tmp_path / "registry")

    def cli(*arguments: str) -> str:
        code = registry_cli.main([*arguments, "--registry", root])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return captured.out

    cli("registry", "register", str(written.directory))
    onnx_sha = written.metadata["onnx"]["sha256"]
    shown = json.loads(cli("registry", "show", "iris@2"))
    assert shown["onnx"]["artifact"] == "2/model.onnx"
    assert shown["onnx"]["sha256"] == onnx_sha
    both = {
        model_format: yaml.safe_load(
            cli(
                "registry",
                "resolve",
                "iris@2",
                "--format",
                "yaml",
                *(["--model-format", model_format] if model_format else []),
            )
        )["spec"]["model"]
        for model_format in ("", "joblib", "onnx")
    }
    assert both[""] == both["joblib"]
    assert both["joblib"]["format"] == "joblib"
    assert both["onnx"] == {
        "uri": (tmp_path / "registry" / "iris" / "2" / "model.onnx").as_uri(),
        "version": "2",
        "sha256": onnx_sha,
        "format": "onnx",
    }
    assert cli("registry", "resolve", "iris@2", "--model-format", "onnx").split() == [
        both["onnx"]["uri"],
        onnx_sha,
    ]

    # The resolved block is enough to fetch and serve the ONNX model with its digest pinned.
    fetched = fetch_artifact(both["onnx"]["uri"], tmp_path / "fetched", onnx_sha)
    loaded = load_model(
        fetched, name="iris", version="2", model_format="onnx", expected_sha256=onnx_sha, trusted_types=[]
    )
    np.testing.assert_array_equal(
        loaded.run(iris[0], frozenset(["predict"]))["predict"], logistic.predict(iris[0])
    )

    # verify checks the ONNX artifact's own digest too.
    store = open_store(root)
    verify(store, parse_reference("iris@2"))
    (tmp_path / "registry" / "iris" / "2" / "model.onnx").write_bytes(b"changed")
    with pytest.raises(RegistryError, match=r"sha256 mismatch for .*model\.onnx"):
        verify(store, parse_reference("iris@2"))


def test_resolving_onnx_for_a_version_without_it_is_one_line(
    tmp_path: Path, logistic: LogisticRegression, capsys: pytest.CaptureFixture[str]
) -> None:
    written = package(logistic, tmp_path / "dist", name="iris", version="1")
    root = ["--registry", str(tmp_path / "registry")]
    assert registry_cli.main(["registry", "register", str(written.directory), *root]) == 0
    capsys.readouterr()
    assert registry_cli.main(["registry", "resolve", "iris@1", "--model-format", "onnx", *root]) == 1
    assert capsys.readouterr().err.strip() == (
        "modeldeploy-runtime: error: iris@1 has no 'onnx' artifact: it has joblib"
    )
