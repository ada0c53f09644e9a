"""Undo what a real node leaves on the host besides processes: mounts under its directory, its
pods' network-namespace mounts, its cgroup directories and the kubelet's log links."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
CONTAINER_LOG_LINKS = Path("/var/log/containers")


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount, in mount order."""
    mounts = []
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split(" ")
        separator = fields.index("-")
        mounts.append((_unescape(fields[4]), fields[separator + 1]))
    return mounts


def mounts_under(directory: Path) -> list[str]:
    prefix = str(directory.resolve())
    return [point for point, _ in _mounts() if point == prefix or point.startswith(prefix + "/")]


def _umount(point: str) -> None:
    if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def unmount_under(directory: Path) -> None:
    """Unmount everything mounted at or below ``directory``, deepest (and latest) first."""
    for _ in range(3):  # a mount stacked over another shows up again once the top one is gone
        points = mounts_under(directory)
        if not points:
            return
        for point in sorted(points, key=lambda p: p.count("/"), reverse=True):
            _umount(point)


def remove_network_namespaces(paths: list[str]) -> None:
    mounted = {point for point, _ in _mounts()}
    for path in paths:
        if path in mounted:
            _umount(path)
        Path(path).unlink(missing_ok=True)


def cgroup_mount_points() -> list[Path]:
    return [Path(point) for point, kind in _mounts() if kind in ("cgroup", "cgroup2")]


def remove_empty_cgroup(name: str) -> None:
    """rmdir ``/<name>`` in every cgroup hierarchy where it is empty. runc removes each
    container's cgroup (``/<containerd namespace>/<id>``); their parent is shared by every node
    of the machine, so it goes only once no other node has a container left in it."""
    for hierarchy in cgroup_mount_points():
        with contextlib.suppress(OSError):
            (hierarchy / name.strip("/")).rmdir()


def remove_container_log_links(pod_logs_dir: Path) -> None:
    """The kubelet links each container's log into /var/log/containers; drop this node's links."""
    if not CONTAINER_LOG_LINKS.is_dir():
        return
    prefix = str(pod_logs_dir)
    for link in CONTAINER_LOG_LINKS.iterdir():
        if link.is_symlink() and str(link.readlink()).startswith(prefix):
            link.unlink()
