"""What an artifact URI names: the file it is stored under locally, and how it may be shown.

The operator (which renders the path the runtime will load) and the fetcher (which writes that
file) both call :func:`artifact_basename`, so they agree on the name, including a ``%20`` in a
pre-signed URL. Like :mod:`modeldeploy_runtime.apikeys`, this module needs the standard library
only, so the operator can import it without the serving stack.

URIs are decoded as their scheme defines: ``https://`` and ``file://`` paths are percent-encoded
(RFC 3986) and decoded here; ``s3://`` keys and plain paths are literal, as boto3 and the AWS CLI
read them. The decoded name must be one safe path segment, so it can never leave its folder.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

MAX_FILE_NAME_BYTES = 255  # NAME_MAX on Linux
_PERCENT_ENCODED_SCHEMES = frozenset({"https", "http", "file"})
_REDACTED = "[redacted]"


class ArtifactNameError(ValueError):
    """The URI does not end with a usable file name; the message is one line saying why."""


def check_file_name(name: str) -> str:
    """``name`` if it is one safe path segment; else ArtifactNameError saying what is wrong with it.

    Safe: not empty, not starting with a dot (no ``.``, ``..`` or hidden files), no ``/`` or
    ``\\``, no control characters (NUL included), at most 255 bytes in UTF-8.
    """
    if not name:
        problem = "is empty"
    elif name.startswith("."):
        problem = "starts with a dot"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif any(ord(character) < 0x20 or ord(character) == 0x7F for character in name):
        problem = "contains a control character"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME_BYTES:
        problem = f"is longer than {MAX_FILE_NAME_BYTES} bytes"
    else:
        return name
    raise ArtifactNameError(f"file name {name!r} {problem}; expected one path segment such as model.joblib")


def artifact_basename(uri: str) -> str:
    """The file name an artifact keeps locally: the last segment of the URI's path, decoded, checked.

    ``https://h/m/my%20model.joblib?X-Amz-Signature=...`` → ``my model.joblib``;
    ``https://h/a/..%2F..%2Fevil`` → ArtifactNameError (the decoded name holds separators).
    """
    if "://" in uri:
        parts = urlsplit(uri)
        scheme, path = parts.scheme.lower(), parts.path
    else:
        scheme, path = "", uri
    segment = path.rsplit("/", 1)[-1]
    if scheme in _PERCENT_ENCODED_SCHEMES:
        try:
            segment = unquote(segment, errors="strict")
        except UnicodeDecodeError:
            raise ArtifactNameError(
                f"{printable_uri(uri)}: the file name is not UTF-8 once percent-decoded"
            ) from None
    try:
        return check_file_name(segment)
    except ArtifactNameError as error:
        raise ArtifactNameError(f"{printable_uri(uri)}: the URI must end with a file name: {error}") from None


def printable_uri(uri: str) -> str:
    """``uri`` safe to log: a query (a pre-signed URL's signature), fragment and user info are hidden."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    query = _REDACTED if parts.query else ""
    fragment = _REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, host, parts.path, query, fragment))


def has_query(uri: str) -> bool:
    """Whether the URI carries a query, as a pre-signed URL does (its signature covers one object)."""
    return "://" in uri and bool(urlsplit(uri).query)
