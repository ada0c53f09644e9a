"""The Lambda function loads the serving chain but not the HTTP server (uvicorn, httptools, uvloop).

Run in a fresh interpreter, as a Lambda container starts: import the handler by the name a function
is configured with, answer one prediction (which loads the model), then list what got imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.aws_lambda.conftest import MODEL_NAME, Bundle
from tests.aws_lambda.lambda_events import FUNCTION_URL, make_event
from tests.runtime.conftest import IRIS_ROW

SERVER_MODULES = ("uvicorn", "httptools", "uvloop", "modeldeploy_runtime.serving.server")
_PROBE = """
import importlib, json, sys
module_name, _, attribute = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module_name), attribute)
result = handler(json.loads(sys.argv[2]), None)
print(json.dumps({"status": result["statusCode"], "modules": sorted(sys.modules)}))
"""


def test_handler_serves_a_prediction_without_importing_the_http_server(bundle: Bundle) -> None:
    body = json.dumps({"instances": [IRIS_ROW]}).encode()
    event = make_event(
        FUNCTION_URL, "POST", f"/v1/models/{MODEL_NAME}:predict", body, {"X-API-Key": bundle.api_key}
    )
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MODELDEPLOY_")}
    environment["LAMBDA_TASK_ROOT"] = str(bundle.root)
    completed = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            _PROBE,
            "modeldeploy_runtime.aws_lambda.handler",
            json.dumps(event),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["status"] == 200  # the model was loaded and predicted: the whole serving chain ran
    assert "modeldeploy_runtime.serving.dataplane" in report["modules"]
    loaded_server = [name for name in report["modules"] if name.startswith(SERVER_MODULES)]
    assert loaded_server == []
    imported_lines = [line for line in completed.stderr.splitlines() if line.startswith("import time:")]
    assert imported_lines, "-X importtime printed nothing"
    assert not [line for line in imported_lines if any(module in line for module in SERVER_MODULES)]
