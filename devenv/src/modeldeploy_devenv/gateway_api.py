"""The Gateway API's CRDs, taken from its published Go module (sigs.k8s.io/gateway-api) through the
Go module proxy, the way the control-plane binaries are; cached beside them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from modeldeploy_devenv.assets import AssetError, cache_dir
from modeldeploy_devenv.versions import GATEWAY_API_VERSION

MODULE = "sigs.k8s.io/gateway-api"
STANDARD_CRDS = "config/crd/standard"


def gateway_api_crd(kind_plural: str = "httproutes") -> Path:
    """The standard-channel CRD file of ``gateway.networking.k8s.io/<kind_plural>``."""
    name = f"gateway.networking.k8s.io_{kind_plural}.yaml"
    cached = cache_dir("gateway-api") / GATEWAY_API_VERSION / name
    if cached.exists():
        return cached
    with tempfile.TemporaryDirectory() as workdir:
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"{MODULE}@{GATEWAY_API_VERSION}"],
            cwd=workdir, env={**os.environ, "GOFLAGS": "-mod=mod"}, capture_output=True, text=True, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise AssetError(f"go mod download {MODULE}@{GATEWAY_API_VERSION} failed:\n{result.stderr[-2000:]}")
    source = Path(json.loads(result.stdout)["Dir"]) / STANDARD_CRDS / name
    if not source.exists():
        raise AssetError(f"{MODULE}@{GATEWAY_API_VERSION} has no {STANDARD_CRDS}/{name}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    shutil.copyfile(source, partial)
    partial.replace(cached)
    return cached
