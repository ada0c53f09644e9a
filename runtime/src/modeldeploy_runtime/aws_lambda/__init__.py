"""The AWS Lambda target: the function's handler, its zip bundle, and the ``lambda`` commands.

``modeldeploy_runtime.aws_lambda.handler`` is the handler name a Lambda function is configured
with. It is resolved on first access (see :mod:`modeldeploy_runtime.aws_lambda.function`), so the
``lambda package``/``lambda deploy`` commands, which import this package's other modules, do not
load the serving stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modeldeploy_runtime.aws_lambda.function import handler

__all__ = ["handler"]


def __getattr__(name: str) -> Any:
    if name == "handler":
        from modeldeploy_runtime.aws_lambda.function import handler  # noqa: PLC0415

        return handler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
