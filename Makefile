# modeldeploy — the two commands a newcomer needs are `make dev` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
CLUSTER ?= local
CLUSTER_DIR ?= $(CURDIR)/.cluster
export MODELDEPLOY_CLUSTER_DIR ?= $(CLUSTER_DIR)
HELM = $(shell $(PY) -c 'from modeldeploy_devenv.assets import require_binary; print(require_binary("helm"))')
OPERATOR_IMAGE ?= ghcr.io/modeldeploy/operator:0.1.0
RUNTIME_IMAGE ?= ghcr.io/modeldeploy/model-runtime:0.1.0
RUNTIME_ONNX_IMAGE ?= $(RUNTIME_IMAGE)-onnx
KUBECTL := $(VENV)/bin/kubectl --kubeconfig $(MODELDEPLOY_CLUSTER_DIR)/kubeconfig
# bench/ joins once it holds Python files.
LINT_PATHS := operator/src runtime/src devenv/src tests $(if $(wildcard bench/*.py),bench)

.PHONY: help venv bench-peer lock binaries cluster-up cluster-down dev test test-fast lint format images chart-crds kind-e2e clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV_STAMP): requirements-dev.txt runtime/pyproject.toml operator/pyproject.toml devenv/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + ")")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e runtime -e operator -e devenv
	@touch $@

venv: $(VENV_STAMP) ## create/update .venv from the pinned requirements

lock: ## re-resolve requirements-dev.txt from requirements-dev.in
	$(PY) -m pip install --quiet -r requirements-dev.in
	{ echo "# Pinned by 'make lock' from requirements-dev.in; installed by 'make venv'."; \
	  $(PY) -m pip freeze --exclude-editable --disable-pip-version-check; } > requirements-dev.txt

binaries: venv ## find or build (once per machine) the control-plane binaries
	@$(PY) -m modeldeploy_devenv build

cluster-up: binaries ## start (or reuse) the local control plane; kubeconfig in .cluster/kubeconfig
	@$(PY) -m modeldeploy_devenv up

cluster-down: ## stop the local control plane started by cluster-up
	@test -x $(PY) && $(PY) -m modeldeploy_devenv down || true

# MLServer, the peer of bench/, in a virtualenv of its own (its workers need uvloop < 0.22).
BENCH_VENV_STAMP := .venv-bench/.installed
$(BENCH_VENV_STAMP): runtime/pyproject.toml | $(VENV_STAMP)
	$(PY) -c 'from pathlib import Path; from bench.runtime_vs_mlserver import setup_mlserver_venv; setup_mlserver_venv(Path(".venv-bench"))'
	@touch $@

bench-peer: $(BENCH_VENV_STAMP) ## install MLServer (the benchmarks' peer) into .venv-bench

test: binaries bench-peer ## run the whole test suite, control-plane tests included
	$(PY) -m pytest

test-fast: venv ## run the tests that need no control plane
	$(PY) -m pytest -m "not cluster and not slow"

lint: binaries ## ruff, ruff format --check, mypy --strict, hadolint, helm lint
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy $(LINT_PATHS)
	$(VENV)/bin/hadolint Dockerfile.operator Dockerfile.runtime
	@if [ -f charts/modeldeploy/Chart.yaml ]; then $(HELM) lint --strict charts/modeldeploy; fi

format: venv ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

dev: venv ## run the operator on the local control plane and apply the examples (CLUSTER=kind: on kind)
ifeq ($(CLUSTER),kind)
	@KIND_DEV=1 bash devenv/src/modeldeploy_devenv/kind_e2e.sh
else
	@$(MAKE) --no-print-directory cluster-up
	$(PY) -m modeldeploy_devenv.dev
endif

images: venv ## build the operator and runtime images, and the ONNX-only runtime (Docker if a daemon runs, else podman)
	@$(PY) -m modeldeploy_devenv.images --operator-image $(OPERATOR_IMAGE) --runtime-image $(RUNTIME_IMAGE) \
		--runtime-onnx-image $(RUNTIME_ONNX_IMAGE)

chart-crds: ## copy crds/ into the Helm chart (a test fails when the two differ)
	rm -f charts/modeldeploy/crds/*.yaml && cp crds/*.yaml charts/modeldeploy/crds/

kind-e2e: venv binaries ## end-to-end on kind: images, helm install, predict, version bump (needs Docker)
	@bash devenv/src/modeldeploy_devenv/kind_e2e.sh

clean: cluster-down ## remove the virtualenv and build outputs (the binary cache stays)
	rm -rf $(VENV) .venv-bench .mypy_cache .ruff_cache .pytest_cache
