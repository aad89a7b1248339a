#!/usr/bin/env bash
# `make e2e-kind`: the operator in a real kind cluster, installed with the
# Helm chart, reconciling against the cloud fakes running in the cluster.
# Needs Docker, kind and kubectl; builds helm from e2e/helm like the tests.
#   WIB_KIND_KEEP=1 keeps the cluster afterwards for poking around.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cluster=${WIB_KIND_CLUSTER:-wib-e2e}
image=ghcr.io/wib-dev/wib-controller:e2e
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "make e2e-kind needs $tool" >&2; exit 1; }
done
helm=$(bash "$root/e2e/helm/build.sh")

cleanup() {
  if [ -z "${WIB_KIND_KEEP:-}" ]; then kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

echo "==> kind cluster $cluster"
kind create cluster --name "$cluster" --config "$root/e2e/kind/cluster.yaml" --wait 120s
kubectl config use-context "kind-$cluster"

echo "==> image $image"
docker build -t "$image" "$root"
kind load docker-image "$image" --name "$cluster"

echo "==> chart"
"$helm" lint "$root/charts/wib"
"$helm" upgrade --install wib "$root/charts/wib" \
  --namespace wib-system --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
  --set image.pullPolicy=Never --wait --timeout 180s
kubectl -n wib-system rollout status deployment/wib-controller --timeout=120s

echo "==> samples"
kubectl apply -f "$root/config/samples/00-namespace.yaml"
kubectl apply -f "$root/config/samples/10-provider.yaml"
kubectl wait --for=condition=IssuerReady cip/local --timeout=120s
# Without cloud credentials in the cluster, bindings must settle honestly:
# Ready=False with a precise reason, the ServiceAccount still handled.
kubectl apply -f "$root/config/samples/30-aws-binding.yaml"
kubectl -n team-a wait --for=jsonpath='{.status.observedGeneration}'=1 wib/app1-aws --timeout=120s
kubectl get cip,wib -A

echo "==> least privilege, as the chart's ServiceAccount"
as="--as=system:serviceaccount:wib-system:wib-controller"
for denied in "get secrets -A" "create serviceaccounts --subresource=token -n team-a" "create deployments -n team-a" "update leases -n kube-system"; do
  if kubectl auth can-i $denied $as >/dev/null 2>&1; then
    echo "the operator may $denied" >&2; exit 1
  fi
done
kubectl auth can-i update leases -n wib-system $as

echo "==> uninstall keeps CRDs (and so every binding's cloud identity)"
"$helm" uninstall wib --namespace wib-system --wait
kubectl get crd workloadidentitybindings.wib.dev
echo "e2e-kind passed"
