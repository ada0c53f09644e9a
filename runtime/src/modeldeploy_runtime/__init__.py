"""modeldeploy's generic model runtime."""

__version__ = "0.1.0"
