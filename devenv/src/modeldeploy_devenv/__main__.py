"""``python -m modeldeploy_devenv build|up|down|status``: the local control plane, for the Makefile."""

from __future__ import annotations

import argparse
import sys
import time

from modeldeploy_devenv.assets import AssetError, build_missing
from modeldeploy_devenv.cluster import ClusterError, ClusterState, default_directory, is_healthy, stop, up
from modeldeploy_devenv.polling import WaitTimeoutError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeldeploy_devenv", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "down", "status"])
    args = parser.parse_args(argv)
    directory = default_directory()
    try:
        if args.command == "build":
            build_missing()
        elif args.command == "up":
            started = time.monotonic()
            build_missing()
            running = up(directory)
            print(f"[cluster] up in {time.monotonic() - started:.1f}s; kubeconfig: {running.kubeconfig}")
        elif args.command == "down":
            stop(directory)
            print(f"[cluster] stopped; removed {directory}")
        else:
            state = ClusterState.load(directory)
            healthy = state is not None and is_healthy(state)
            print("healthy" if healthy else "not running")
            return 0 if healthy else 1
    except (AssetError, ClusterError, WaitTimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
