"""Local processes: a free loopback port to give one, and stopping one politely, then firmly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

STOP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _signal(process: subprocess.Popen[bytes], signal_number: int) -> None:
    """Signal the process, or its whole group when it leads one (``start_new_session=True``),
    so that workers it forked stop with it."""
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal_number)
        else:
            process.send_signal(signal_number)
    except ProcessLookupError:
        pass


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
    if process.poll() is None:
        _signal(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL)
            process.wait()
    return process.returncode
