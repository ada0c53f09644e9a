"""AWS Lambda HTTP events as plain HTTP requests, and HTTP responses as Lambda results.

Three event shapes reach the handler (all documented by AWS):

- API Gateway HTTP API and Lambda function URLs, payload format 2.0: ``version: "2.0"``,
  ``rawPath``, ``rawQueryString``, ``requestContext.http.method``, lower-case ``headers`` with
  repeated values joined by commas.
- API Gateway REST API proxy integration (and HTTP API payload 1.0): ``httpMethod``, ``path``,
  ``headers`` and ``multiValueHeaders`` in the client's spelling.

Both carry ``body`` as a string and ``isBase64Encoded``. A named stage (``requestContext.stage``)
may prefix the path; it is removed when what follows is a V1 or V2 route. Nothing here knows the
protocols: the request goes to the same ASGI application the HTTP server runs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy_runtime.errors import RequestError

_ROUTE_PREFIXES = ("/v1/", "/v2/")
_DEFAULT_STAGE = "$default"
# Connection management is the gateway's job; these would be wrong or rejected in a Lambda result.
_HOP_BY_HOP = frozenset({"connection", "content-length", "keep-alive", "transfer-encoding"})


class UnsupportedEventError(ValueError):
    """The event is not an HTTP event from API Gateway or a function URL."""


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request as the ASGI application sees it."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    payload_version: str
    client: str | None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise UnsupportedEventError(f"event {what} must be a string, got {type(value).__name__}")
    return value


def _without_stage(path: str, stage: Any) -> str:
    """``path`` without a leading ``/<stage>`` when a V1 or V2 route follows it.

    HTTP API events carry a named stage in ``rawPath``; REST API events do not, and a route
    never starts with ``/<stage>/v1`` or ``/<stage>/v2`` otherwise, so stripping is unambiguous.
    """
    if not isinstance(stage, str) or stage in ("", _DEFAULT_STAGE):
        return path
    prefix = f"/{stage}"
    rest = path[len(prefix) :]
    if path.startswith(prefix + "/") and (rest.startswith(_ROUTE_PREFIXES) or rest == "/v2"):
        return rest
    return path


def _latin1(value: object, what: str) -> bytes:
    """``value`` as HTTP carries it (ISO-8859-1); RequestError(400) naming ``what`` when it cannot be."""
    try:
        return str(value).encode("latin-1")
    except UnicodeEncodeError:
        raise RequestError(400, f"{what} contains characters outside ISO-8859-1 (Latin-1)") from None


def _header_pair(name: object, value: object) -> tuple[bytes, bytes]:
    encoded_name = _latin1(name, "a header name").lower()
    return encoded_name, _latin1(value, f"header {encoded_name.decode('latin-1')!r}")


def _header_pairs(event: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    """Lower-case (name, value) pairs; REST events' ``multiValueHeaders`` win over ``headers``."""
    pairs: list[tuple[bytes, bytes]] = []
    multi = event.get("multiValueHeaders")
    if isinstance(multi, Mapping) and multi:
        for name, values in multi.items():
            for value in values if isinstance(values, list) else [values]:
                if value is not None:
                    pairs.append(_header_pair(name, value))
        return pairs
    single = event.get("headers")
    if isinstance(single, Mapping):
        for name, value in single.items():
            if value is not None:
                pairs.append(_header_pair(name, value))
    return pairs


def _body(event: Mapping[str, Any]) -> bytes:
    raw = event.get("body")
    if raw is None:
        return b""
    text = _text(raw, "body")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "request body is marked base64-encoded but is not valid base64") from None
    return text.encode("utf-8")


def parse_event(event: Any) -> HttpRequest:
    """The HTTP request in an API Gateway (REST or HTTP API) or function URL event.

    Raises UnsupportedEventError for anything else, RequestError(400) for an undecodable body or a
    header, cookie or query value that HTTP cannot carry (outside Latin-1).
    """
    if not isinstance(event, Mapping):
        raise UnsupportedEventError(f"expected an HTTP event object, got {type(event).__name__}")
    context = event.get("requestContext")
    context = context if isinstance(context, Mapping) else {}
    if event.get("version") == "2.0":
        http = context.get("http")
        if not isinstance(http, Mapping):
            raise UnsupportedEventError("payload 2.0 event without requestContext.http")
        method = _text(http.get("method"), "requestContext.http.method")
        path = _text(event.get("rawPath", http.get("path")), "rawPath")
        query = event.get("rawQueryString") or ""
        headers = _header_pairs(event)
        cookies = event.get("cookies")
        if isinstance(cookies, list) and cookies:
            headers.append((b"cookie", _latin1("; ".join(str(c) for c in cookies), "a cookie")))
        source = http.get("sourceIp")
        version = "2.0"
    elif "httpMethod" in event:
        method = _text(event.get("httpMethod"), "httpMethod")
        path = _text(event.get("path"), "path")
        query = _query_from_parameters(event)
        headers = _header_pairs(event)
        identity = context.get("identity")
        source = identity.get("sourceIp") if isinstance(identity, Mapping) else None
        version = "1.0"
    else:
        raise UnsupportedEventError(
            "not an API Gateway or function URL event: expected version 2.0 with requestContext.http, "
            "or httpMethod and path"
        )
    return HttpRequest(
        method=method.upper(),
        path=_without_stage(path, context.get("stage")),
        query_string=_latin1(query, "the query string"),
        headers=headers,
        body=_body(event),
        payload_version=version,
        client=source if isinstance(source, str) else None,
    )


def _query_from_parameters(event: Mapping[str, Any]) -> str:
    multi = event.get("multiValueQueryStringParameters")
    single = event.get("queryStringParameters")
    parameters: list[tuple[str, str]] = []
    if isinstance(multi, Mapping):
        parameters = [(str(k), str(v)) for k, values in multi.items() for v in (values or [])]
    elif isinstance(single, Mapping):
        parameters = [(str(k), str(v)) for k, v in single.items()]
    return "&".join(f"{key}={value}" for key, value in parameters)


def render_result(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, payload_version: str
) -> dict[str, Any]:
    """The Lambda result API Gateway or the function URL turns back into the HTTP response."""
    joined: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name in _HOP_BY_HOP:
            continue
        multi.setdefault(name, []).append(value)
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    result: dict[str, Any] = {
        "statusCode": status,
        "headers": joined,
        "body": text,
        "isBase64Encoded": encoded,
    }
    if payload_version == "1.0":
        result["multiValueHeaders"] = multi
    return result
