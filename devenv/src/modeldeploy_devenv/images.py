"""``make images``: build the operator and runtime images, with or without a Docker daemon.

With a Docker daemon the Dockerfiles build on their upstream bases (their build ``ARG`` defaults).
Without one the build is daemonless (podman with runc), and since no container registry may be
reachable the two bases are made from Debian packages with mmdebstrap: a build base (python3 and
venv) and a distroless-like final base (python3 and CA certificates, user 65532, no shell, no
package manager). Either way the Python dependencies come from a wheelhouse of the pinned
requirements built on the host (``build/wheelhouse``), installed in the image with ``--no-index``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from modeldeploy_devenv.debian import DebianError, ensure_packages

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART_VALUES = REPO_ROOT / "charts" / "modeldeploy" / "values.yaml"
WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"
DEBIAN_SUITE = "bookworm"
# The Python of the final base (Debian 12's python3); the wheelhouse is resolved for it.
IMAGE_PYTHON = "3.11"
LOCAL_PACKAGES = ("runtime", "operator")
# What the images install from the wheelhouse (the Dockerfiles name the same requirements).
WHEELHOUSE_REQUIREMENTS = ("modeldeploy-runtime[serve,onnx-engine]", "modeldeploy-operator")
RUNTIME_SIZE_LIMIT_BYTES = 400 * 1000 * 1000
NONROOT_UID = 65532


@dataclass(frozen=True)
class DebianBase:
    """A base image made from Debian packages; ``build_arg`` is the Dockerfile ARG it replaces."""

    build_arg: str
    tag: str
    packages: tuple[str, ...]
    distroless: bool


DEBIAN_BASES = (
    DebianBase("BUILD_BASE", f"localhost/modeldeploy/python3-build:{DEBIAN_SUITE}", ("python3", "python3-venv"), False),
    DebianBase(
        "FINAL_BASE", f"localhost/modeldeploy/python3-distroless:{DEBIAN_SUITE}", ("python3", "ca-certificates"), True
    ),
)  # fmt: skip

# What makes the final base distroless-like: removed from its root filesystem once mmdebstrap is
# done (no shell or other tools, no package manager, no perl, no docs), then a non-root user is
# added. Of /usr/bin only the Python interpreter stays.
DISTROLESS_KEPT_BINARIES = "python3*"
DISTROLESS_REMOVED = (
    "usr/bin/*", "usr/sbin/*", "usr/lib/apt", "usr/lib/dpkg", "etc/apt", "var/lib/apt", "var/cache/apt",
    "var/cache/debconf", "var/log/*", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
    "usr/lib/*-linux-gnu/perl*", "usr/share/perl*", "usr/lib/*-linux-gnu/libapt*", "usr/lib/*-linux-gnu/gconv",
    "usr/share/lintian", "usr/share/bash-completion",
)  # fmt: skip
DOCS_EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")

# podman's settings for this machine kind: no default ulimits (the sandbox refuses raising
# them) and runc (crun refuses the hybrid cgroup layout); no systemd to manage cgroups or log.
CONTAINERS_CONF = """[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    build_args: tuple[str, ...] = ()
    size_limit_bytes: int | None = None


IMAGES = (
    Image("operator", "Dockerfile.operator"),
    Image("runtime", "Dockerfile.runtime", size_limit_bytes=RUNTIME_SIZE_LIMIT_BYTES),
    # The same Dockerfile without scikit-learn, SciPy, joblib and skops: serves `format: onnx` only.
    Image(
        "runtime-onnx",
        "Dockerfile.runtime",
        ("RUNTIME_EXTRAS=server,onnx-engine",),
        size_limit_bytes=RUNTIME_SIZE_LIMIT_BYTES,
    ),
)


class ImageBuildError(RuntimeError):
    """An image could not be built; the message is one line naming what failed."""


def _log(message: str) -> None:
    print(f"[images] {message}", flush=True)


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise ImageBuildError(f"{what} failed: {_reason(result.stderr or result.stdout, result.returncode)}")
    return result.stdout


def _reason(output: str, returncode: int) -> str:
    """The most telling line of a failed command's output: its last error line."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "Error", "error", "ERROR"))]
    specific = [line for line in errors if "failed to run" not in line]
    return (specific or errors or lines or [f"exit status {returncode}"])[-1]


def docker_daemon_runs() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def podman_env() -> dict[str, str]:
    """The environment for podman: its containers.conf points at this project's settings."""
    config = (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeldeploy" / "containers.conf"
    )
    config.parent.mkdir(parents=True, exist_ok=True)
    if not config.is_file() or config.read_text() != CONTAINERS_CONF:
        config.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(config)}


def _wheelhouse_key() -> str:
    digest = hashlib.sha256(IMAGE_PYTHON.encode())
    for path in ("requirements-dev.txt", "runtime/pyproject.toml", "operator/pyproject.toml"):
        digest.update((REPO_ROOT / path).read_bytes())
    return digest.hexdigest()


def build_wheelhouse() -> Path:
    """Wheels for the images: the local packages (always rebuilt) and their pinned dependencies
    for the image's Python, downloaded once per change of the pins."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    for stale in WHEELHOUSE.glob("modeldeploy_*.whl"):
        stale.unlink()
    local = [str(REPO_ROOT / package) for package in LOCAL_PACKAGES]
    _run([*pip, "wheel", "--no-deps", "--wheel-dir", str(WHEELHOUSE), *local], "building the local wheels")
    stamp = WHEELHOUSE / ".pins-sha256"
    key = _wheelhouse_key()
    if stamp.is_file() and stamp.read_text() == key:
        return WHEELHOUSE
    machine = platform.machine()
    platforms = [
        f"--platform={tag}_{machine}" for tag in ("manylinux_2_28", "manylinux_2_17", "manylinux2014")
    ]
    _log(f"downloading the pinned dependencies for Python {IMAGE_PYTHON} into {WHEELHOUSE}")
    _run(
        [
            *pip, "download", "--only-binary=:all:", *platforms, f"--python-version={IMAGE_PYTHON}",
            "--implementation=cp", f"--abi=cp{IMAGE_PYTHON.replace('.', '')}", "--dest", str(WHEELHOUSE),
            "--find-links", str(WHEELHOUSE), "--constraint", str(REPO_ROOT / "requirements-dev.txt"),
            *WHEELHOUSE_REQUIREMENTS,
        ],
        "downloading the wheelhouse",
    )  # fmt: skip
    stamp.write_text(key)
    return WHEELHOUSE


def _image_exists(tag: str, env: dict[str, str]) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], env=env, check=False).returncode == 0


def make_distroless(root: Path) -> None:
    """Strip a Debian root filesystem to the distroless-like final base, with user 65532."""
    for pattern in DISTROLESS_REMOVED:
        for path in root.glob(pattern):
            if path.match(f"usr/bin/{DISTROLESS_KEPT_BINARIES}"):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    with (root / "etc" / "passwd").open("a") as passwd:
        passwd.write(f"nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n")
    with (root / "etc" / "group").open("a") as group:
        group.write(f"nonroot:x:{NONROOT_UID}:\n")
    home = root / "home" / "nonroot"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, NONROOT_UID, NONROOT_UID)


def build_debian_base(base: DebianBase, env: dict[str, str]) -> None:
    """mmdebstrap a root filesystem of ``base.packages`` and import it as ``base.tag``."""
    _log(f"making {base.tag} from Debian {DEBIAN_SUITE} packages: {', '.join(base.packages)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modeldeploy-base-") as workdir:
        root, rootfs = Path(workdir) / "root", Path(workdir) / "rootfs.tar"
        _run(
            [
                "mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(base.packages)}",
                *[f"--dpkgopt=path-exclude={pattern}" for pattern in DOCS_EXCLUDED], DEBIAN_SUITE, str(root),
            ],
            f"mmdebstrap of {base.tag}",
        )  # fmt: skip
        changes = ["ENV=PATH=/usr/local/bin:/usr/bin:/bin", "ENV=LANG=C.UTF-8"]
        if base.distroless:
            make_distroless(root)
            changes += [f"USER={NONROOT_UID}:{NONROOT_UID}", "WORKDIR=/home/nonroot"]
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(rootfs), "."], f"packing {base.tag}")
        shutil.rmtree(root)
        change_args = [arg for change in changes for arg in ("--change", change)]
        _run(["podman", "import", *change_args, str(rootfs), base.tag], f"podman import of {base.tag}", env)
    _log(f"made {base.tag} in {time.monotonic() - started:.0f}s")


def image_size_bytes(tag: str, builder: str, env: dict[str, str] | None = None) -> int:
    output = _run([builder, "image", "inspect", tag], f"inspecting {tag}", env)
    return int(json.loads(output)[0]["Size"])


def build_images(tags: dict[str, str], *, fresh: bool = False) -> dict[str, int]:
    """Build the images of ``IMAGES`` that ``tags`` names, each tagged ``tags[name]``; return their
    sizes in bytes."""
    build_wheelhouse()
    builder, env = image_builder()
    if builder == "docker":
        build_args: list[str] = []
        _log("a Docker daemon runs: building on the upstream bases")
    else:
        try:
            ensure_packages("images")
        except DebianError as error:
            raise ImageBuildError(f"no Docker daemon and no daemonless builder: {error}") from error
        _log("no Docker daemon: building daemonless with podman, on bases made from Debian packages")
        for base in DEBIAN_BASES:
            if fresh or not _image_exists(base.tag, env):
                build_debian_base(base, env)
        build_args = [f"--build-arg={base.build_arg}={base.tag}" for base in DEBIAN_BASES]
        build_args += ["--pull=never", "--network=none", "--format=docker"]
    sizes = {}
    for image in (image for image in IMAGES if image.name in tags):
        started = time.monotonic()
        tag = tags[image.name]
        _run(
            [
                builder,
                "build",
                *build_args,
                *(f"--build-arg={argument}" for argument in image.build_args),
                "-f",
                str(REPO_ROOT / image.dockerfile),
                "-t",
                tag,
                str(REPO_ROOT),
            ],
            f"{builder} build of {image.dockerfile}",
            env,
        )
        sizes[image.name] = image_size_bytes(tag, builder, env)
        _log(
            f"built {tag} in {time.monotonic() - started:.0f}s: {sizes[image.name] / 1e6:.0f} MB uncompressed"
        )
        if image.size_limit_bytes is not None and sizes[image.name] > image.size_limit_bytes:
            raise ImageBuildError(
                f"the {image.name} image is {sizes[image.name] / 1e6:.0f} MB, "
                f"over the {image.size_limit_bytes / 1e6:.0f} MB limit"
            )
    return sizes


def default_image_tags() -> dict[str, str]:
    """The tag of every image of ``IMAGES``: the chart's defaults (``image``, ``runtimeImage``,
    ``runtimeOnnxImage``)."""
    values = yaml.safe_load(CHART_VALUES.read_text())
    return {
        "operator": str(values["image"]),
        "runtime": str(values["runtimeImage"]),
        "runtime-onnx": str(values["runtimeOnnxImage"]),
    }


def image_builder() -> tuple[str, dict[str, str]]:
    """The CLI whose store holds the built images, and its environment."""
    return ("docker", dict(os.environ)) if docker_daemon_runs() else ("podman", podman_env())


def image_exists(tag: str) -> bool:
    builder, env = image_builder()
    return (
        subprocess.run(
            [builder, "image", "inspect", tag], capture_output=True, env=env, check=False
        ).returncode
        == 0
    )


def save_image(tag: str, archive: Path) -> None:
    """Write ``tag`` as a docker-archive tarball (what ``ctr images import`` reads)."""
    builder, env = image_builder()
    save = [builder, "save", "-o", str(archive), tag]
    if builder == "podman":
        save[2:2] = ["--format", "docker-archive"]
    _run(save, f"{builder} save {tag}", env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeldeploy_devenv.images", description=__doc__)
    for image in IMAGES:
        parser.add_argument(f"--{image.name}-image", required=True, help=f"tag of the {image.name} image")
    parser.add_argument("--fresh", action="store_true", help="remake the Debian bases too")
    arguments = parser.parse_args(argv)
    tags = {image.name: getattr(arguments, f"{image.name.replace('-', '_')}_image") for image in IMAGES}
    started = time.monotonic()
    try:
        build_images(tags, fresh=arguments.fresh)
    except ImageBuildError as error:
        print(f"make images: {error}", file=sys.stderr)
        return 1
    _log(f"{len(tags)} images built in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
