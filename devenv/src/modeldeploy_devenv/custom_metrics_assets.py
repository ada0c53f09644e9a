"""The custom-metrics path's binaries and KEDA's CRDs, from their published Go modules.

Prometheus (``cmd/prometheus``, only its Kubernetes service discovery, no web UI assets) and
prometheus-adapter (``cmd/adapter``) are built like the control-plane binaries: through the Go
module proxy, ``-trimpath``, CGO off, into the per-version cache under ``cache_root()``. KEDA's CRDs
are files of KEDA's module (``config/crd/bases``), taken from its zip through the same proxy. Like
the kubelet, they are built on demand, the first time a test or ``make dev`` needs them.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_devenv.assets import AssetError, _go, _install, cache_dir, cache_root, find_binary
from modeldeploy_devenv.versions import KEDA_VERSION, PROMETHEUS_ADAPTER_VERSION, PROMETHEUS_VERSION

PROMETHEUS = "prometheus"
PROMETHEUS_ADAPTER = "prometheus-adapter"
KEDA_MODULE = "github.com/kedacore/keda/v2"
KEDA_CRD_DIR = "config/crd/bases"
KEDA_SCALED_OBJECT_CRD = "keda.sh_scaledobjects.yaml"


@dataclass(frozen=True)
class GoCommand:
    """One command of a published Go module, built inside a throw-away module that requires it
    (``go install mod@version`` would also read the module's version list, which the proxy refuses
    for some modules)."""

    module: str
    version: str
    package: str
    tags: str = ""


GO_COMMANDS = {
    PROMETHEUS: GoCommand(
        "github.com/prometheus/prometheus",
        PROMETHEUS_VERSION,
        "cmd/prometheus",
        # Prometheus's own build tags: every service discovery but Kubernetes' left out.
        tags="remove_all_sd,enable_kubernetes_sd",
    ),
    PROMETHEUS_ADAPTER: GoCommand(
        "sigs.k8s.io/prometheus-adapter", PROMETHEUS_ADAPTER_VERSION, "cmd/adapter"
    ),
}


def _log(message: str) -> None:
    print(f"[binaries] {message}", flush=True)


def _go_directive(go_mod: str) -> str:
    found = re.search(r"^go\s+(\S+)\s*$", go_mod, re.MULTILINE)
    if found is None:
        raise AssetError("a go.mod without a go directive")
    return found.group(1)


def _build_command(name: str, workdir: Path) -> None:
    command = GO_COMMANDS[name]
    download = json.loads(_go(["mod", "download", "-json", f"{command.module}@{command.version}"], workdir))
    if "Error" in download:
        raise AssetError(f"{command.module}@{command.version}: {download['Error']}")
    go_line = _go_directive(Path(download["GoMod"]).read_text())
    (workdir / "go.mod").write_text(
        f"module modeldeploy.local/{name}\n\ngo {go_line}\n\nrequire {command.module} {command.version}\n"
    )
    out = workdir / name
    build = ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out)]
    if command.tags:
        build += ["-tags", command.tags]
    _go([*build, f"{command.module}/{command.package}"], workdir)
    _install(out, name)


def _build(label: str, step: Callable[[Path], None]) -> None:
    if shutil.which("go") is None:
        raise AssetError(f"Go is needed to build {label}")
    started = time.monotonic()
    _log(f"building {label} (first time on this machine) ...")
    with tempfile.TemporaryDirectory(prefix="modeldeploy-build-") as workdir:
        step(Path(workdir))
    _log(f"built {label} in {time.monotonic() - started:.0f}s")


def require_custom_metrics_binaries() -> dict[str, Path]:
    """Prometheus and prometheus-adapter, built into the cache the first time; raises AssetError."""
    found: dict[str, Path] = {}
    for name in GO_COMMANDS:
        binary = find_binary(name)
        if binary is None:
            _build(name, functools.partial(_build_command, name))
            binary = cache_dir(name) / name
        found[name] = binary
    return found


def keda_crd_dir() -> Path:
    return cache_root() / "keda" / KEDA_VERSION / "crds"


def _fetch_keda_crds(workdir: Path) -> None:
    download = json.loads(_go(["mod", "download", "-json", f"{KEDA_MODULE}@{KEDA_VERSION}"], workdir))
    if "Error" in download:
        raise AssetError(f"{KEDA_MODULE}@{KEDA_VERSION}: {download['Error']}")
    source = Path(download["Dir"]) / KEDA_CRD_DIR
    target = keda_crd_dir()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for crd in sorted(source.glob("keda.sh_*.yaml")):
        shutil.copyfile(crd, partial / crd.name)
    if not (partial / KEDA_SCALED_OBJECT_CRD).is_file():
        raise AssetError(f"{KEDA_MODULE}@{KEDA_VERSION} has no {KEDA_CRD_DIR}/{KEDA_SCALED_OBJECT_CRD}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # a half-copied directory is never found


def require_keda_crds() -> Path:
    """The directory of KEDA's keda.sh CRDs (ScaledObject among them), fetched the first time."""
    if not (keda_crd_dir() / KEDA_SCALED_OBJECT_CRD).is_file():
        _build(f"KEDA {KEDA_VERSION} CRDs", _fetch_keda_crds)
    return keda_crd_dir()
