"""Packaging models and the version registry: ``package()``, ``register``/``resolve``, their CLI.

``modeldeploy_runtime.packaging.package`` (in :mod:`.build`) is resolved on first access, so the
registry commands, which import this package's other modules, do not load scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modeldeploy_runtime.packaging.build import package

__all__ = ["package"]


def __getattr__(name: str) -> Any:
    if name == "package":
        from modeldeploy_runtime.packaging.build import package  # noqa: PLC0415

        return package
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
