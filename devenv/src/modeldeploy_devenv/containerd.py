"""The real node's container runtime: a containerd of its own (socket, root, state and runc state
all inside the cluster's directory, so two clusters never share one), images loaded into it, and
the removal of everything it started.

Debian's containerd 1.6 with runc. On this machine kind the CRI must not set negative
``oom_score_adj`` (the sandbox refuses it even to root; runc then fails with "can't get final
child's PID from pipe: EOF"), so ``restrict_oom_score_adj`` is on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_devenv.images import save_image

CRI_NAMESPACE = "k8s.io"
PAUSE_IMAGE = "localhost/modeldeploy/pause:3.10"
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
# Plugins that would touch host-wide paths or that this node does not use.
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
)


class ContainerdError(RuntimeError):
    """containerd or ctr failed; the message names the step."""


@dataclass(frozen=True)
class ContainerdPaths:
    """Where one node's containerd keeps everything: under ``base``, its sockets in ``socket_dir``."""

    base: Path
    # Unix socket paths are limited to ~104 bytes, which a deep cluster directory (pytest's) passes:
    # the sockets live in a short directory of their own.
    socket_dir: Path

    @property
    def socket(self) -> Path:
        return self.socket_dir / "containerd.sock"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def runc_root(self) -> Path:
        return self.base / "runc"

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "cni"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(value)


def render_toml(tables: dict[str, dict[str, object]]) -> str:
    """A TOML document from ``{table name: {key: scalar or list}}`` ("" is the top level)."""
    lines = []
    for table, values in tables.items():
        if table:
            lines.append(f"\n[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def build_containerd_config(paths: ContainerdPaths) -> str:
    """containerd's config.toml (version 2) for one node: pure, from its paths."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return render_toml({
        "": {"version": 2, "root": str(paths.root), "state": str(paths.state), "disabled_plugins": DISABLED_PLUGINS},
        "grpc": {"address": str(paths.socket)},
        "ttrpc": {"address": str(paths.socket) + ".ttrpc"},
        "debug": {"address": ""},
        "metrics": {"address": ""},
        'plugins."io.containerd.internal.v1.opt"': {"path": str(paths.root / "opt")},
        'plugins."io.containerd.runtime.v1.linux"': {"runtime_root": str(paths.runc_root / "v1")},
        cri: {
            "sandbox_image": PAUSE_IMAGE,
            "restrict_oom_score_adj": True,
            "disable_apparmor": True,
            "stream_server_address": "127.0.0.1",
            "stream_server_port": "0",
            # Pods' network namespaces are mounted under the node's state, not in /var/run/netns.
            "netns_mounts_under_state_dir": True,
        },
        f"{cri}.containerd": {"snapshotter": "overlayfs", "default_runtime_name": "runc"},
        f"{cri}.containerd.runtimes.runc": {"runtime_type": "io.containerd.runc.v2"},
        f"{cri}.containerd.runtimes.runc.options": {
            "SystemdCgroup": False, "BinaryName": RUNC, "Root": str(paths.runc_root),
        },
        f"{cri}.cni": {"bin_dir": CNI_BIN_DIR, "conf_dir": str(paths.cni_conf_dir), "max_conf_num": 1},
    })  # fmt: skip


def ctr(paths: ContainerdPaths, *args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        ["ctr", "--address", str(paths.socket), "--namespace", CRI_NAMESPACE, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise ContainerdError(f"ctr {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def containerd_answers(paths: ContainerdPaths) -> bool:
    try:
        ctr(paths, "version", timeout=5)
    except (ContainerdError, subprocess.TimeoutExpired):
        return False
    return True


def import_images(paths: ContainerdPaths, tags: list[str]) -> None:
    """Copy ``tags`` from the image builder's store into this containerd's CRI namespace."""
    with tempfile.TemporaryDirectory(prefix="modeldeploy-images-") as workdir:
        for index, tag in enumerate(tags):
            archive = Path(workdir) / f"{index}.tar"
            save_image(tag, archive)
            ctr(paths, "images", "import", str(archive))
            archive.unlink()


def _runc_states(paths: ContainerdPaths) -> list[tuple[Path, dict[str, object]]]:
    states = []
    for state_file in sorted(paths.runc_root.glob("*/*/state.json")):
        try:
            states.append((state_file.parent, json.loads(state_file.read_text())))
        except (OSError, ValueError):
            continue
    return states


def network_namespaces(paths: ContainerdPaths) -> list[str]:
    """The bind-mounted network namespaces of this node's containers (under its state directory,
    or ``/var/run/netns/cni-*`` where containerd mounts them there)."""
    found = set()
    for _, state in _runc_states(paths):
        config = state.get("config", {})
        namespaces = config.get("namespaces", []) if isinstance(config, dict) else []
        for namespace in namespaces:
            if namespace.get("type") == "NEWNET" and not namespace.get("path", "/proc").startswith("/proc"):
                found.add(namespace["path"])
    return sorted(found)


def remove_containers(paths: ContainerdPaths) -> None:
    """Kill and delete every container this node's runc knows (processes, cgroups, state)."""
    for container_dir, _ in _runc_states(paths):
        subprocess.run(
            [RUNC, "--root", str(container_dir.parent), "delete", "--force", container_dir.name],
            capture_output=True,
            check=False,
            timeout=60,
        )


def shim_pids(paths: ContainerdPaths) -> list[int]:
    """The runc shims this node's containerd started (they name its socket on their command line)."""
    address = str(paths.socket).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            arguments = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arguments and arguments[0].endswith(b"containerd-shim-runc-v2") and address in arguments:
            pids.append(int(proc.name))
    return pids


def kill_shims(paths: ContainerdPaths) -> None:
    for pid in shim_pids(paths):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
