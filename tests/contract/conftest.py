"""The contract tests run the operator exactly as its own integration tests do."""

from tests.operator.conftest import crd, start_operator

__all__ = ["crd", "start_operator"]
