"""Run a Deployment's pod template as local processes, exactly as the operator rendered it.

kwok pods run no containers, so this is how tests (and ``make dev``) prove that what the operator
renders is what the runtime understands: the init containers run to completion, then the main
container runs, each with the template's command, args and env (``secretKeyRef``/``envFrom``
resolved), and the template's volumes materialised as local directories — Secrets as files (kept
in sync on demand, like the kubelet's atomic ``..data`` swap), emptyDirs as temporary
directories. Container paths in args and env are rewritten to those directories, and the
container ports to free loopback ports.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeldeploy_devenv.polling import WaitTimeoutError, wait_until
from modeldeploy_devenv.processes import free_port, stop_process

SecretReader = Callable[[str], Mapping[str, str]]
"""Reads a Secret by name from the pod's namespace; returns its base64 ``data``."""


def installed_commands() -> dict[str, str]:
    """The images' commands, as installed beside this interpreter (the project's virtualenv)."""
    return {"modeldeploy-runtime": str(Path(sys.executable).with_name("modeldeploy-runtime"))}


class PodRunnerError(RuntimeError):
    """The template asks for something the local runner cannot provide, or a container failed."""


@dataclass
class LocalPod:
    """The materialised volumes and the running main container of one pod template."""

    template: dict[str, Any]
    read_secret: SecretReader
    executables: Mapping[str, str] = field(default_factory=installed_commands)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="modeldeploy-pod-")))
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _mounts: dict[str, Path] = field(default_factory=dict)

    # -- volumes --------------------------------------------------------------------------
    def materialise_volumes(self) -> None:
        for volume in self.template["spec"].get("volumes", []):
            directory = self.root / "volumes" / volume["name"]
            directory.mkdir(parents=True, exist_ok=True)
            if "secret" in volume:
                self._write_secret_volume(volume, directory)
            elif "emptyDir" not in volume:
                kind = next(k for k in volume if k != "name")
                raise PodRunnerError(
                    f"volume {volume['name']}: {kind} volumes are not supported by the local runner"
                )
            self._mounts[volume["name"]] = directory

    def _write_secret_volume(self, volume: dict[str, Any], directory: Path) -> None:
        """Write the Secret's keys as files, swapping them in atomically as the kubelet does."""
        data = self.read_secret(volume["secret"]["secretName"])
        items = volume["secret"].get("items") or [{"key": key, "path": key} for key in data]
        staging = Path(tempfile.mkdtemp(prefix=".data-", dir=directory))
        for item in items:
            target = staging / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(data[item["key"]]))
        link = directory / "..data"
        temporary_link = directory / "..data_tmp"
        temporary_link.unlink(missing_ok=True)
        temporary_link.symlink_to(staging.name)
        previous = link.resolve() if link.is_symlink() else None
        temporary_link.replace(link)
        for item in items:
            top = item["path"].split("/")[0]
            if not (directory / top).is_symlink():
                (directory / top).symlink_to(f"..data/{top}")
        if previous is not None and previous != staging:
            shutil.rmtree(previous, ignore_errors=True)

    def refresh_secret_volumes(self, template: dict[str, Any] | None = None) -> None:
        """Re-read every Secret volume (what the kubelet does periodically)."""
        for volume in (template or self.template)["spec"].get("volumes", []):
            if "secret" in volume:
                self._write_secret_volume(volume, self._mounts[volume["name"]])

    # -- containers -----------------------------------------------------------------------
    def _path_rewrites(self, container: dict[str, Any]) -> list[tuple[str, str]]:
        rewrites = [
            (
                mount["mountPath"].rstrip("/"),
                str(self._mounts[mount["name"]] / mount.get("subPath", "")).rstrip("/"),
            )
            for mount in container.get("volumeMounts", [])
        ]
        return sorted(rewrites, key=lambda pair: len(pair[0]), reverse=True)

    def _rewrite(self, value: str, container: dict[str, Any]) -> str:
        for container_path, local_path in self._path_rewrites(container):
            if value == container_path or value.startswith(container_path + "/"):
                return local_path + value[len(container_path) :]
        return value

    def _args(self, container: dict[str, Any]) -> list[str]:
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if not command:
            raise PodRunnerError(
                f"container {container['name']} relies on the image entrypoint; render a command"
            )
        executable = self.executables.get(command[0])
        if executable is None:
            raise PodRunnerError(f"container {container['name']}: no local executable for {command[0]!r}")
        container_ports = {
            str(port["containerPort"]): port.get("name", "") for port in container.get("ports", [])
        }
        rendered = [executable]
        previous = ""
        for arg in command[1:]:
            flag, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
            if sep:  # --flag=value
                rendered.append(f"{flag}={self._local_value(flag, value, container, container_ports)}")
            elif arg.startswith("--"):
                rendered.append(arg)
            else:
                rendered.append(self._local_value(previous, arg, container, container_ports))
            previous = arg if arg.startswith("--") else ""
        return rendered

    def _local_value(self, flag: str, value: str, container: dict[str, Any], ports: dict[str, str]) -> str:
        if "port" in flag and value in ports:
            name = ports[value] or value
            self.ports.setdefault(name, free_port())
            return str(self.ports[name])
        return self._rewrite(value, container)

    def _env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {
            key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "SYSTEMROOT")
        }
        env["TMPDIR"] = str(self.root / "tmp")
        (self.root / "tmp").mkdir(exist_ok=True)
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                data = self.read_secret(source["secretRef"]["name"])
                env.update({key: base64.b64decode(value).decode() for key, value in data.items()})
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = self._rewrite(variable["value"], container)
            elif "secretKeyRef" in variable.get("valueFrom", {}):
                reference = variable["valueFrom"]["secretKeyRef"]
                data = self.read_secret(reference["name"])
                if reference["key"] in data:
                    env[variable["name"]] = base64.b64decode(data[reference["key"]]).decode()
                elif not reference.get("optional"):
                    raise PodRunnerError(
                        f"env {variable['name']}: Secret {reference['name']} has no {reference['key']}"
                    )
        return env

    def run_init_containers(self, timeout: float = 120.0) -> None:
        for container in self.template["spec"].get("initContainers", []):
            result = subprocess.run(
                self._args(container),
                env=self._env(container),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if result.returncode != 0:
                raise PodRunnerError(
                    f"init container {container['name']} failed: {result.stderr.strip()[-2000:]}"
                )

    def start_main_container(self) -> None:
        container = self.template["spec"]["containers"][0]
        log = (self.root / f"{container['name']}.log").open("wb")
        self.process = subprocess.Popen(
            self._args(container), env=self._env(container), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def logs(self) -> str:
        container = self.template["spec"]["containers"][0]
        return (self.root / f"{container['name']}.log").read_text(errors="replace")

    def url(self, port_name: str = "http") -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll the template's own readiness probe until it answers 200."""
        container = self.template["spec"]["containers"][0]
        probe = container["readinessProbe"]["httpGet"]
        port = probe["port"]
        port_name = port if isinstance(port, str) else next(
            p.get("name", str(port)) for p in container["ports"] if p["containerPort"] == port
        )  # fmt: skip
        url = f"http://127.0.0.1:{self.ports[port_name]}{probe['path']}"

        def answers_200() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise PodRunnerError(
                    f"main container exited with {self.process.returncode}:\n{self.logs()[-3000:]}"
                )
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)

        try:
            wait_until(f"readiness probe {url}", answers_200, timeout=timeout, retrying=(OSError,))
        except WaitTimeoutError as error:
            raise PodRunnerError(f"{error}:\n{self.logs()[-3000:]}") from None

    def start(self) -> None:
        self.materialise_volumes()
        self.run_init_containers()
        self.start_main_container()
        self.wait_ready()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        shutil.rmtree(self.root, ignore_errors=True)
