"""spec.model.format onnx and GPU limits reach the runtime container unchanged (pure builders)."""

from __future__ import annotations

from pathlib import Path

import yaml

from modeldeploy_operator.builders import build_deployment
from modeldeploy_operator.builders.deployment import runtime_commands, runtime_image
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.model import parse_model_uri
from tests.operator.factories import md

CONFIG = OperatorConfig(runtime_image="registry.example/model-runtime:test")
CRD = Path(__file__).resolve().parents[2] / "crds" / "modeldeploy.io_modeldeployments.yaml"


def test_onnx_format_is_passed_to_the_runtime() -> None:
    deployment = md(model={"uri": "s3://models/iris/1/model.onnx", "version": "1", "format": "onnx"})
    serve = runtime_commands(deployment, parse_model_uri(deployment.spec.model.uri, model_dir="/model")).serve
    assert serve[serve.index("--model-format") + 1] == "onnx"
    assert serve[serve.index("--model-uri") + 1] == "/model/model.onnx"


def test_gpu_limit_reaches_the_runtime_container() -> None:
    deployment = md(runtime={"resources": {"limits": {"nvidia.com/gpu": 1, "memory": "1Gi"}}})
    container = build_deployment(deployment, CONFIG)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1, "memory": "1Gi"}


def test_crd_format_enum_lists_onnx() -> None:
    crd = yaml.safe_load(CRD.read_text())
    model = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "model"
    ]
    assert model["properties"]["format"]["enum"] == ["joblib", "skops", "onnx"]


def test_the_runtime_image_follows_the_format_unless_the_spec_names_one() -> None:
    config = OperatorConfig(
        runtime_image="registry.example/rt:1", runtime_onnx_image="registry.example/rt:1-onnx"
    )
    onnx = {"uri": "s3://models/iris/1/model.onnx", "version": "1", "format": "onnx"}
    images = {
        "joblib": runtime_image(md(), config),
        "onnx": runtime_image(md(model=onnx), config),
        "onnx, image set": runtime_image(
            md(model=onnx, runtime={"image": "registry.example/mine:2"}), config
        ),
    }
    assert images == {
        "joblib": "registry.example/rt:1",
        "onnx": "registry.example/rt:1-onnx",
        "onnx, image set": "registry.example/mine:2",
    }
    containers = build_deployment(md(model=onnx), config)["spec"]["template"]["spec"]
    assert {c["image"] for c in containers["initContainers"] + containers["containers"]} == {
        "registry.example/rt:1-onnx"
    }
