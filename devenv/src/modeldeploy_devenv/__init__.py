"""modeldeploy's development tooling, one package that ``make``, ``make dev``, the tests and bench import.

- the local control plane (envtest-style: etcd, kube-apiserver, controllers and kwok as local
  processes on loopback): ``versions`` (pinned versions), ``assets`` (find or build the binaries),
  ``pki`` (per-run certificates), ``cluster`` (start, reuse, stop); ``python -m modeldeploy_devenv
  build|up|down|status`` drives it for the Makefile;
- ``dev``: the ``make dev`` program; ``pod_runner`` runs a rendered pod template as local processes;
  ``sample_models`` uploads the iris sample models; ``kind_e2e.sh`` is ``make kind-e2e``;
- ``loopback_s3``: the S3-compatible server (moto) on loopback, authentication enforced;
- ``operator_process``: the operator run as a subprocess; ``processes``: free ports, stopping a
  process; ``polling``: waiting with a deadline.
"""
