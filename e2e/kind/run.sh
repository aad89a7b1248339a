#!/usr/bin/env bash
# `make e2e-kind`: the e2e scenarios against wib running in a real kind
# cluster. The operator image (Dockerfile) is installed with the Helm chart
# and e2e/kind/values.yaml; the Azure, GCP and EKS fakes (Dockerfile target
# `fakes`) and moto (e2e/kind/moto.Dockerfile) run as Deployments in
# wib-fakes, verifying ServiceAccount tokens against the cluster's own
# issuer. The suite runs on the host and attaches to the cluster through
# e2e/kind/attached.json (NodePorts published by e2e/kind/cluster.yaml);
# e2e/in-cluster.txt lists the scenarios.
# Needs Docker with BuildKit (buildx), kind v0.31+ (node image v1.35), kubectl,
# cargo, and go and flock to build helm from e2e/helm.
#   WIB_KIND_KEEP=1 keeps the cluster afterwards for poking around.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/e2e/kind"
cluster=${WIB_KIND_CLUSTER:-wib-e2e}
controller=ghcr.io/wib-dev/wib-controller:e2e
fakes=ghcr.io/wib-dev/wib-fakes:e2e
moto=ghcr.io/wib-dev/moto:e2e
for tool in docker kind kubectl cargo go flock; do
  command -v "$tool" >/dev/null || { echo "make e2e-kind needs $tool" >&2; exit 1; }
done
kind_minor=$(kind version | sed -n 's/^kind v0\.\([0-9]*\)\..*/\1/p')
if [ -n "$kind_minor" ] && [ "$kind_minor" -lt 31 ]; then
  echo "make e2e-kind needs kind v0.31 or later for kindest/node:v1.35 ($(kind version))" >&2
  exit 1
fi
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "a kind cluster named $cluster exists (kept by WIB_KIND_KEEP?); delete it with" >&2
  echo "  kind delete cluster --name $cluster   or set WIB_KIND_CLUSTER" >&2
  exit 1
fi
helm=$(bash "$root/e2e/helm/build.sh")
work=$(mktemp -d -t wib-kind-XXXXXX)
# The cluster's kubeconfig stays out of the user's ~/.kube/config.
export KUBECONFIG="$work/kubeconfig"

cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "==> failed; operator log tail" >&2
    kubectl -n wib-system logs deployment/wib-controller --tail=80 >&2 || true
    kubectl get pods -A >&2 || true
  fi
  if [ -z "${WIB_KIND_KEEP:-}" ]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    rm -rf "$work"
  else
    echo "kept: kind cluster $cluster, KUBECONFIG=$KUBECONFIG"
  fi
}
trap cleanup EXIT

# Loaded into kind from the local image store: built there (--load, also
# with a docker-container builder), without provenance attestations, which
# `kind load` cannot resolve from a containerd image store.
build() { docker build --load --provenance=false "$@"; }

echo "==> kind cluster $cluster"
kind create cluster --name "$cluster" --config "$here/cluster.yaml" --kubeconfig "$KUBECONFIG" --wait 120s

echo "==> images"
build -t "$controller" "$root"
build --target fakes -t "$fakes" "$root"
build -f "$here/moto.Dockerfile" \
  --build-arg MOTO_VERSION="$(tr -d '[:space:]' < "$root/e2e/moto/VERSION")" \
  -t "$moto" "$root/e2e/moto"
kind load docker-image "$controller" "$fakes" "$moto" --name "$cluster"

echo "==> cloud fakes in wib-fakes"
kubectl apply -f "$here/fakes.yaml"
for deployment in wib-fake-azure wib-fake-gcp wib-fake-eks moto; do
  kubectl -n wib-fakes rollout status "deployment/$deployment" --timeout=180s
done

echo "==> wib from the chart"
kubectl apply -f "$here/operator.yaml"
"$helm" lint --strict "$root/charts/wib"
"$helm" upgrade --install wib "$root/charts/wib" \
  --namespace wib-system \
  --values "$here/values.yaml" \
  --set image.repository="${controller%:*}" --set image.tag="${controller##*:}" \
  --wait --timeout 180s
kubectl -n wib-system rollout status deployment/wib-controller --timeout=120s

echo "==> least privilege, as the chart's ServiceAccount"
as="--as=system:serviceaccount:wib-system:wib-controller"
can_i() {
  # shellcheck disable=SC2086 # the words are kubectl's arguments
  kubectl auth can-i $1 "$as" 2>/dev/null || true
}
# Exactly "no": a kubectl error must not pass for a denial.
for denied in "get secrets -A" "create serviceaccounts --subresource=token -n default" "create deployments -n default" "update leases -n kube-system" "update workloadidentitybindings.wib.dev -n default" "update serviceaccounts -n default"; do
  answer=$(can_i "$denied")
  [ "$answer" = no ] || { echo "can-i $denied as the operator: '$answer', want 'no'" >&2; exit 1; }
done
answer=$(can_i "update leases -n wib-system")
[ "$answer" = yes ] || { echo "can-i update leases -n wib-system as the operator: '$answer', want 'yes'" >&2; exit 1; }

echo "==> e2e scenarios (e2e/in-cluster.txt) against the cluster"
WIB_E2E_CLUSTER="$here/attached.json" bash "$root/e2e/in-cluster.sh"

echo "==> uninstall keeps CRDs (and so every binding's cloud identity)"
"$helm" uninstall wib --namespace wib-system --wait
kubectl get crd workloadidentitybindings.wib.dev
echo "e2e-kind passed"
