"""``modeldeploy-operator``: run the operator (kopf) against the current kubeconfig or in-cluster."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

import kopf

from modeldeploy_operator.config import ConfigError, OperatorConfig, config_from_env


def parse_args(argv: Sequence[str] | None, base: OperatorConfig) -> tuple[OperatorConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="modeldeploy-operator",
        description="Run the modeldeploy operator: ModelDeployment -> Deployment, Service, Secrets, ServiceMonitor.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=base.metrics_port, help="port of /metrics, 0 disables it"
    )
    parser.add_argument(
        "--health-port", type=int, default=0, help="port of kopf's liveness endpoint /healthz, 0 disables it"
    )
    parser.add_argument("--log-format", choices=("plain", "json"), default=base.log_format)
    parser.add_argument(
        "--runtime-image", default=base.runtime_image, help="default image of the model runtime"
    )
    parser.add_argument(
        "--runtime-onnx-image",
        default=base.runtime_onnx_image,
        help="default image of the model runtime for format onnx (the ONNX-only image)",
    )
    parser.add_argument("--verbose", action="store_true", help="log at INFO (kopf's own messages included)")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG")
    args = parser.parse_args(argv)
    for flag in ("metrics_port", "health_port"):
        if not 0 <= getattr(args, flag) <= 65535:
            parser.error(f"--{flag.replace('_', '-')} {getattr(args, flag)} must be between 0 and 65535")
    namespaces = tuple(args.namespace) or (() if args.all_namespaces else base.namespaces)
    config = dataclasses.replace(
        base,
        namespaces=namespaces,
        all_namespaces=not namespaces,
        metrics_port=args.metrics_port,
        log_format=args.log_format,
        runtime_image=args.runtime_image,
        runtime_onnx_image=args.runtime_onnx_image,
    )
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config, args = parse_args(argv, config_from_env())
    except ConfigError as error:
        print(f"modeldeploy-operator: {error}", file=sys.stderr)
        return 2
    log_format = kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.PLAIN
    kopf.configure(verbose=args.verbose, debug=args.debug, log_format=log_format)
    if not (args.verbose or args.debug):
        logging.getLogger("modeldeploy_operator").setLevel(logging.INFO)
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # "Handler ... succeeded" per event
    import modeldeploy_operator.handlers  # noqa: F401, PLC0415 - registers the handlers with kopf

    # kopf's own liveness probe: answers only while its event loop runs and its probes pass.
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    kopf.run(
        standalone=True,
        liveness_endpoint=liveness,
        clusterwide=config.all_namespaces,
        namespaces=list(config.namespaces),
        memo=kopf.Memo(config=config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
