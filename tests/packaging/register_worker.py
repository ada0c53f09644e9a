"""A registering process for the concurrency tests: ``python -m tests.packaging.register_worker ROOT DIR...``.

It imports everything, prints ``ready``, waits for a line on stdin (the parent releases all
workers at once), then registers each package folder in turn and prints one line per version.
"""

from __future__ import annotations

import sys
from pathlib import Path

from modeldeploy_runtime.package_layout import read_package
from modeldeploy_runtime.packaging.registry import register
from modeldeploy_runtime.packaging.registry_store import open_store


def main(arguments: list[str]) -> int:
    root, directories = arguments[0], [Path(item) for item in arguments[1:]]
    store = open_store(root)
    packages = [read_package(directory) for directory in directories]
    getattr(store, "client", None)  # an S3 store builds its client now, not inside the race
    print("ready", flush=True)
    sys.stdin.readline()
    for item in packages:
        registered = register(store, item)
        print(f"registered {registered.version}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
