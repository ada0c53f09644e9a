"""Debian packages the development environment needs, installed with apt-get when missing.

A fresh machine has none of them; the harness installs what it lacks itself and prints what it
installs, so a CI run and a newcomer's first ``make`` need no manual step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# What each part of the environment needs from Debian (one table; the callers name a purpose).
PACKAGES_FOR: dict[str, tuple[str, ...]] = {
    "images": ("podman", "buildah", "mmdebstrap", "runc", "containernetworking-plugins", "uidmap"),
    "node": ("containerd", "runc", "containernetworking-plugins", "iptables", "iproute2", "podman"),
}
APT_LOCK_TIMEOUT_SECONDS = 600


class DebianError(RuntimeError):
    """Packages are missing and cannot be installed here; the message says which and why."""


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    """The packages of ``packages`` that dpkg does not list as installed."""
    if shutil.which("dpkg-query") is None:
        return list(packages)
    missing = []
    for package in packages:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f", "${db:Status-Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if status.stdout.strip() != "installed":
            missing.append(package)
    return missing


def cannot_install_reason() -> str | None:
    """Why apt-get cannot install packages on this machine, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"this is {sys.platform}, not Linux"
    if shutil.which("apt-get") is None:
        return "apt-get is not available (not a Debian-based system)"
    if os.geteuid() != 0:
        return "installing Debian packages needs root"
    return None


def ensure_packages(purpose: str) -> None:
    """Install the packages ``purpose`` needs that are missing, printing them; raise if impossible."""
    missing = missing_packages(PACKAGES_FOR[purpose])
    if not missing:
        return
    reason = cannot_install_reason()
    if reason is not None:
        raise DebianError(f"{purpose} needs the Debian packages {' '.join(missing)}, and {reason}")
    print(f"[debian] installing for {purpose}: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_SECONDS}"
    for command in (
        ["apt-get", "-o", lock, "update", "-q"],
        ["apt-get", "-o", lock, "install", "-y", "-q", "--no-install-recommends", *missing],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise DebianError(f"{' '.join(command[3:5])} failed: {' '.join(tail)}")
    print(f"[debian] installed {' '.join(missing)}", flush=True)
