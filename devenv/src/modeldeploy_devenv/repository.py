"""Where the repository's files are. This package is only ever installed editable from the
repository (``make venv``), so its own location names the checkout it belongs to."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CRD_DIR = REPO_ROOT / "crds"
EXAMPLES_DIR = REPO_ROOT / "examples"
DEFAULT_CLUSTER_DIR = REPO_ROOT / ".cluster"
