"""``python -m modeldeploy_runtime`` runs the command line."""

import sys

from modeldeploy_runtime.cli import main

sys.exit(main())
