"""Lambda HTTP events built from the recorded-format fixtures in ``events/``.

Each fixture is a whole event as AWS documents it for one kind of trigger; ``make_event`` sets
the method, path, headers and body the way that trigger would (header spelling, base64,
stage prefix, content-length), leaving the rest of the recorded event as it is.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).with_name("events")
HTTP_API = "http_api_v2"
FUNCTION_URL = "function_url"
REST_API = "rest_api_v1"
KINDS = (HTTP_API, FUNCTION_URL, REST_API)
_TEMPLATES = {kind: json.loads((EVENTS / f"{kind}.json").read_text()) for kind in KINDS}


def make_event(
    kind: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Mapping[str, str | None] | None = None,
    *,
    base64_body: bool = False,
    stage: str | None = None,
) -> dict[str, Any]:
    """An event of ``kind`` for one request; ``headers`` replace the fixture's request headers.

    A header given as None is left out (e.g. ``Content-Length``, which is otherwise added).
    """
    event: dict[str, Any] = copy.deepcopy(_TEMPLATES[kind])
    given = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
    sent = {name: value for name, value in given.items() if value is not None}
    event["body"] = (base64.b64encode(body).decode() if base64_body else body.decode()) if body else None
    event["isBase64Encoded"] = base64_body
    context = event["requestContext"]
    if kind == REST_API:
        # REST APIs keep the client's header spelling and give the path without the stage.
        event["httpMethod"] = context["httpMethod"] = method
        event["path"] = path
        event["headers"] = dict(sent)
        event["multiValueHeaders"] = {name: [value] for name, value in sent.items()}
        if stage is not None:
            context["stage"] = stage
        context["path"] = f"/{context['stage']}{path}"
    else:
        # Payload 2.0 lower-cases header names; a named stage shows in rawPath.
        event["headers"] = {name.lower(): value for name, value in sent.items()}
        context["http"]["method"] = method
        raw_path = f"/{stage}{path}" if stage else path
        event["rawPath"] = context["http"]["path"] = raw_path
        context["stage"] = stage or "$default"
    return event
