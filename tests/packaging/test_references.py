"""Pure parts of the registry: references, the ``spec.model`` YAML and index validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modeldeploy_runtime.packaging.cli import spec_model_yaml
from modeldeploy_runtime.packaging.registry import (
    Reference,
    RegisteredVersion,
    RegistryError,
    parse_reference,
    read_index,
    resolve_reference,
)
from modeldeploy_runtime.packaging.registry_store import LocalStore, S3Store, StoreError, open_store


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iris@1.0.0", Reference("iris", "1.0.0")),
        ("iris@production", Reference("iris", "production")),
        ("registry+s3://bucket/team#iris@2", Reference("iris", "2", "s3://bucket/team")),
        ("registry+/mnt/models#iris@prod", Reference("iris", "prod", "/mnt/models")),
    ],
)
def test_references_parse(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("iris", "expected NAME@VERSION or NAME@ALIAS"),
        ("iris@", "version or alias '' is not valid"),
        ("../x@1", "model name '../x' is not valid"),
        ("registry+s3://bucket", r"expected registry\+<root>#NAME@VERSION"),
    ],
)
def test_bad_references_are_refused(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_reference(text)


def test_resolve_reference_needs_a_registry() -> None:
    with pytest.raises(RegistryError, match="names no registry"):
        resolve_reference("iris@1")


def test_spec_model_yaml_is_the_deployment_block_with_string_values() -> None:
    registered = RegisteredVersion(
        name="iris",
        version="1.10",  # would be the float 1.1 if it were not quoted
        uri="s3://bucket/a b#c/iris/1.10/model.joblib",
        entry={"sha256": "ab" * 32, "format": "joblib", "artifact": "1.10/model.joblib"},
    )
    assert yaml.safe_load(spec_model_yaml(registered)) == {
        "spec": {
            "model": {
                "uri": "s3://bucket/a b#c/iris/1.10/model.joblib",
                "version": "1.10",
                "sha256": "ab" * 32,
                "format": "joblib",
            }
        }
    }


def test_stores_are_chosen_by_location(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    s3 = open_store("s3://bucket/team/models/")
    assert isinstance(s3, S3Store)
    assert s3.uri("iris/index.json") == "s3://bucket/team/models/iris/index.json"
    assert open_store("s3://bucket").uri("iris/index.json") == "s3://bucket/iris/index.json"
    with pytest.raises(StoreError, match="unsupported registry location"):
        open_store("https://example.invalid/models")


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ([], "must be an object with 'versions' and 'aliases' objects"),
        ({"versions": {"1": {"sha256": "x"}}, "aliases": {}}, "version '1' lacks artifact, sha256 or format"),
        *(
            (
                {"versions": {"1": {"artifact": artifact, "sha256": "x", "format": "joblib"}}, "aliases": {}},
                f"version '1' has artifact .*, not a path inside the model's folder: file name .* {problem}",
            )
            for artifact, problem in [
                ("../../etc/passwd", "starts with a dot"),
                ("1/..%2Fevil", "starts with a dot"),
                ("1/model.joblib/", "is empty"),
                ("/etc/passwd", "is empty"),
                ("1/..\\..\\evil", "starts with a dot"),
                ("1/a\\b", "contains a path separator"),
                ("1/model\u0000.joblib", "contains a control character"),
            ]
        ),
        ({"versions": {}, "aliases": {"production": "1"}}, "alias 'production' lacks a version"),
    ],
)
def test_malformed_indexes_are_refused(tmp_path: Path, index: object, message: str) -> None:
    (tmp_path / "iris").mkdir()
    (tmp_path / "iris" / "index.json").write_text(json.dumps(index))
    with pytest.raises(RegistryError, match=message):
        read_index(open_store(str(tmp_path)), "iris")
