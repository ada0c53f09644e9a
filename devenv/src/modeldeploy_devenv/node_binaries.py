"""The real node's own binaries: the kubelet (built from the Go module proxy exactly like the
control-plane binaries, into the same per-version cache) and the pause binary of its sandboxes
(there is no registry to pull a pause image from, so it is built here from a few lines of Go)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from modeldeploy_devenv.assets import AssetError, _build_kubernetes, _go, cache_dir, cache_root, find_binary

KUBELET = "kubelet"
PAUSE = "pause"
# A sandbox's pause process: holds the namespaces and waits for the signal that ends the pod.
PAUSE_SOURCE = """package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
"""


def _log(message: str) -> None:
    print(f"[binaries] {message}", flush=True)


def _build_pause(workdir: Path) -> None:
    (workdir / "go.mod").write_text("module modeldeploy.local/pause\n\ngo 1.22\n")
    (workdir / "main.go").write_text(PAUSE_SOURCE)
    pause_path().parent.mkdir(parents=True, exist_ok=True)
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(pause_path()), "."], workdir)


def pause_path() -> Path:
    """Beside, not inside, the control-plane binary cache (whose presence others poll)."""
    return cache_root() / "node" / PAUSE


def _build_kubelet(workdir: Path) -> None:
    _build_kubernetes(workdir, (KUBELET,))


def require_node_binaries() -> dict[str, Path]:
    """The kubelet and pause binaries, built into the cache the first time; raises AssetError."""
    builders = {KUBELET: _build_kubelet, PAUSE: _build_pause}
    found = {}
    for name, build in builders.items():
        binary = pause_path() if name == PAUSE else find_binary(name)
        if binary is None or not binary.is_file():
            if shutil.which("go") is None:
                raise AssetError(f"Go is needed to build the real node's {name}")
            started = time.monotonic()
            _log(f"building {name} (first time on this machine) ...")
            with tempfile.TemporaryDirectory(prefix="modeldeploy-build-") as workdir:
                build(Path(workdir))
            binary = pause_path() if name == PAUSE else cache_dir(name) / name
            _log(f"built {name} in {time.monotonic() - started:.0f}s: {binary}")
        found[name] = binary
    return found
