"""The one exception the HTTP layer turns into a ``{"error": "..."}`` response."""

from __future__ import annotations


class RequestError(Exception):
    """A client error: ``status`` is the HTTP code, the message says what was wrong and expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[type[RequestError], tuple[int, str]]:
        return RequestError, (self.status, self.message)  # raised in the body decoding helper too


class StartupError(Exception):
    """Serving cannot start; the message is one line for the operator to read."""
