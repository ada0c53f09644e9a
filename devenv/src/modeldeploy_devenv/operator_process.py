"""``modeldeploy-operator`` run as a local subprocess against a cluster: by ``make dev``, the
operator's integration tests and bench/operator_scale.py."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_devenv.polling import WaitTimeoutError, wait_until
from modeldeploy_devenv.processes import free_port, stop_process

# The operator serves its metrics once its start-up handler ran; this metric is there from then on.
SERVING_METRIC = "modeldeploy_operator_reconciles_total"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


@dataclass
class OperatorProcess:
    """A running operator: its process, its metrics port and its log (None: this terminal)."""

    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path | None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def metric(self, name: str, label: str = "") -> float:
        """The sum of the samples of ``name`` (those whose labels contain ``label``); 0 when absent."""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in self.metrics().splitlines()
            if (line.startswith(name + "{") or line.startswith(name + " ")) and label in line
        )

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""

    def serving(self) -> bool:
        """True once the metrics endpoint answers; raises with the log when the operator exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.logs()[-4000:]}")
        return SERVING_METRIC in self.metrics()

    def stop(self) -> int:
        return stop_process(self.process, timeout=STOP_TIMEOUT_SECONDS)


def start_operator(
    kubeconfig: str,
    namespace: str,
    *,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    arguments: Sequence[str] = (),
) -> OperatorProcess:
    """Start ``modeldeploy-operator --namespace NAMESPACE`` on a free metrics port, with
    ``KUBECONFIG`` and ``env`` added to this environment, its output into ``log`` (or this
    terminal); return once it serves its metrics."""
    port = free_port()
    command = [
        sys.executable, "-m", "modeldeploy_operator.cli",
        "--namespace", namespace, "--metrics-port", str(port), *arguments,
    ]  # fmt: skip
    environment = {**os.environ, "KUBECONFIG": kubeconfig, **(env or {})}
    if log is None:
        process = subprocess.Popen(command, env=environment)
    else:
        with log.open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=environment)
    operator = OperatorProcess(process, port, log)
    try:
        wait_until(
            "the operator's metrics endpoint",
            operator.serving,
            timeout=START_TIMEOUT_SECONDS,
            retrying=(OSError,),
        )
    except WaitTimeoutError as error:
        operator.stop()
        raise WaitTimeoutError(f"{error}; its log ends:\n{operator.logs()[-4000:]}") from None
    except BaseException:
        operator.stop()
        raise
    return operator
