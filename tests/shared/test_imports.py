"""The command line starts without the libraries only some commands need.

``modeldeploy-runtime --help``, ``registry …`` and ``lambda package`` must not pay for
scikit-learn, numpy, boto3 or uvicorn; those are imported by the command that uses them.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "numpy", "boto3", "uvicorn", "prometheus_client", "modeldeploy_runtime.serving.model")
_PROBE = """
import json, sys
import modeldeploy_runtime.cli
import modeldeploy_runtime.packaging
import modeldeploy_runtime.aws_lambda
print(json.dumps(sorted(sys.modules)))
"""


def test_command_line_imports_no_heavy_library() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    modules = json.loads(completed.stdout)
    assert "modeldeploy_runtime.packaging.cli" in modules
    assert "modeldeploy_runtime.aws_lambda.cli" in modules
    assert [name for name in modules if name.startswith(HEAVY)] == []


def test_lazy_names_resolve_to_the_functions_users_import() -> None:
    from modeldeploy_runtime import aws_lambda, packaging  # noqa: PLC0415
    from modeldeploy_runtime.aws_lambda.function import handler  # noqa: PLC0415
    from modeldeploy_runtime.packaging.build import package  # noqa: PLC0415

    assert aws_lambda.handler is handler
    assert packaging.package is package
