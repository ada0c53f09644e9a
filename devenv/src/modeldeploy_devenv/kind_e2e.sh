#!/usr/bin/env bash
# End-to-end on a real kind cluster: build both images, load them, helm install, apply the
# example, wait for Ready, predict through a port-forward with the generated key, bump the
# model version and check that a background load loop sees zero failed requests.
#
# Needs a working Docker daemon (kind runs Kubernetes nodes as containers). It cannot run where
# there is none, and says so at once.
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the repository root

if ! docker info >/dev/null 2>&1; then
  echo "kind-e2e: needs a working Docker daemon, and none answers here (docker info failed)." >&2
  echo "kind-e2e: the same flow runs without Docker in 'make test' (contract and helm tests on the local control plane)." >&2
  exit 1
fi

PY=.venv/bin/python
KIND=${KIND:-$(command -v kind || true)}
if [ -z "$KIND" ]; then
  GOBIN="$HOME/.cache/modeldeploy/bin/kind-v0.33.0" go install sigs.k8s.io/kind@v0.33.0
  KIND="$HOME/.cache/modeldeploy/bin/kind-v0.33.0/kind"
fi
HELM=$($PY -c 'from modeldeploy_devenv.assets import require_binary; print(require_binary("helm"))')
KUBECTL=.venv/bin/kubectl
CLUSTER_NAME=${CLUSTER_NAME:-modeldeploy-e2e}
OPERATOR_IMAGE=modeldeploy/operator:e2e
RUNTIME_IMAGE=modeldeploy/model-runtime:e2e
RUNTIME_ONNX_IMAGE=modeldeploy/model-runtime:e2e-onnx
KUBECONFIG_FILE=$(mktemp)
export KUBECONFIG=$KUBECONFIG_FILE

# KIND_DEV=1 (make dev CLUSTER=kind): stop after the first prediction and keep the cluster.
KIND_DEV=${KIND_DEV:-0}

cleanup() {
  if [ "$KIND_DEV" = 1 ]; then
    [ -n "${FORWARD_PID:-}" ] && kill "$FORWARD_PID" 2>/dev/null || true
    echo "kind cluster $CLUSTER_NAME kept; kubeconfig: $KUBECONFIG_FILE (delete with: kind delete cluster --name $CLUSTER_NAME)"
    return
  fi
  [ -n "${LOAD_PID:-}" ] && kill "$LOAD_PID" 2>/dev/null || true
  [ -n "${FORWARD_PID:-}" ] && kill "$FORWARD_PID" 2>/dev/null || true
  "$KIND" delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
  rm -f "$KUBECONFIG_FILE"
}
trap cleanup EXIT

"$KIND" create cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE" --wait 120s
# make images builds the wheelhouse the Dockerfiles install from, then both images with Docker.
make --no-print-directory images OPERATOR_IMAGE="$OPERATOR_IMAGE" RUNTIME_IMAGE="$RUNTIME_IMAGE" RUNTIME_ONNX_IMAGE="$RUNTIME_ONNX_IMAGE"
"$KIND" load docker-image --name "$CLUSTER_NAME" "$OPERATOR_IMAGE" "$RUNTIME_IMAGE" "$RUNTIME_ONNX_IMAGE"

"$HELM" install modeldeploy charts/modeldeploy --namespace modeldeploy-system --create-namespace \
  --set image="$OPERATOR_IMAGE" --set runtimeImage="$RUNTIME_IMAGE" --set runtimeOnnxImage="$RUNTIME_ONNX_IMAGE" --set imagePullPolicy=Never --wait
$KUBECTL create namespace ml
$KUBECTL label namespace ml pod-security.kubernetes.io/enforce=restricted
# The two model versions, packaged here and copied into a PVC (kind's local-path provisioner).
MODELS=$(mktemp -d)
$PY - "$MODELS" <<'PYTHON'
import sys
from pathlib import Path
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from modeldeploy_runtime.packaging import package
X, y = load_iris(return_X_y=True)
root = Path(sys.argv[1])
package(LogisticRegression(max_iter=500).fit(X, y), root / "iris/1", name="iris", version="1")
package(DecisionTreeClassifier(random_state=0).fit(X, y), root / "iris/2", name="iris", version="2")
PYTHON
$KUBECTL apply -n ml -f examples/kind/models-pvc.yaml
$KUBECTL wait -n ml --for=condition=Ready pod/model-loader --timeout=180s
$KUBECTL cp "$MODELS/iris" ml/model-loader:/models/iris
$KUBECTL delete -n ml pod/model-loader --wait=true
SHA1=$(sha256sum "$MODELS/iris/1/model.joblib" | cut -d' ' -f1)
SHA2=$(sha256sum "$MODELS/iris/2/model.joblib" | cut -d' ' -f1)
sed "s/version: \"1\"/version: \"1\"\n    sha256: $SHA1/" examples/kind/iris.yaml | $KUBECTL apply -n ml -f -
$KUBECTL wait -n ml --for=condition=Ready mdep/iris --timeout=300s

KEY=$($KUBECTL get secret -n ml iris-client-demo -o jsonpath='{.data.api-key}' | base64 -d)
$KUBECTL port-forward -n ml svc/iris 18080:http >/dev/null 2>&1 &
FORWARD_PID=$!
BODY='{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}]}'
predict() {
  curl -sf -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "$BODY" http://127.0.0.1:18080/v2/models/iris/infer
}
for _ in $(seq 1 30); do predict >/dev/null 2>&1 && break; sleep 1; done
[ "$(predict)" = 200 ] || { echo "kind-e2e: prediction failed" >&2; exit 1; }
if [ "$KIND_DEV" = 1 ]; then
  echo "iris is Ready on kind. Predict with (after: kubectl port-forward -n ml svc/iris 18080:http):"
  echo "curl -s -H 'Authorization: Bearer $KEY' -H 'Content-Type: application/json' -d '$BODY' http://127.0.0.1:18080/v2/models/iris/infer"
  exit 0
fi

FAILURES=$(mktemp)
( while true; do code=$(predict || true); [ "$code" = 200 ] || echo "$code" >>"$FAILURES"; done ) &
LOAD_PID=$!
$KUBECTL patch -n ml mdep/iris --type merge \
  -p "{\"spec\":{\"model\":{\"uri\":\"pvc://models/iris/2/model.joblib\",\"version\":\"2\",\"sha256\":\"$SHA2\"}}}"
$KUBECTL rollout status -n ml deployment/iris --timeout=300s
$KUBECTL wait -n ml --for=jsonpath='{.status.modelVersion}'=2 mdep/iris --timeout=120s
kill "$LOAD_PID"; LOAD_PID=
if [ -s "$FAILURES" ]; then
  echo "kind-e2e: $(wc -l <"$FAILURES") requests failed during the rollout" >&2
  exit 1
fi
echo "kind-e2e: passed — Ready, predicted with the generated key, rolled to version 2 with zero failed requests"
