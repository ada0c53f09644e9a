"""A helper thread that dies fails its test (pyproject.toml's filterwarnings), not just warns.

The load generators of the runtime tests (e.g. key rotation under load) run in threads; without
this setting a thread killed by a connection error would leave its test green.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_DYING_THREAD_TEST = """
import threading

def test_helper_thread_dies():
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join()
"""


def test_an_exception_in_a_thread_fails_the_test(tmp_path: Path) -> None:
    test_file = tmp_path / "test_dying_thread.py"
    test_file.write_text(_DYING_THREAD_TEST)
    config = ["-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path)]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *config, str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1, completed.stdout
    assert "1 failed" in completed.stdout
    assert "PytestUnhandledThreadExceptionWarning" in completed.stdout
