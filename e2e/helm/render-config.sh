#!/usr/bin/env bash
# Renders the Helm chart's templates (default values, namespace wib-system)
# into config/rbac and config/manager, so the kustomize install in
# config/default is the chart's install by construction. `make generate` runs
# this; a test renders again and fails when config/ differs.
#   usage: render-config.sh [output root, default: config]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/config}
helm=$(bash "$root/e2e/helm/build.sh")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$helm" template wib "$root/charts/wib" --namespace wib-system --skip-crds \
  --output-dir "$tmp" >/dev/null
strip() {
  # Helm's own bookkeeping labels and source comments mean nothing to kustomize.
  grep -v -e '^# Source:' -e 'helm.sh/chart:' -e 'app.kubernetes.io/managed-by: Helm' "$1"
}
header="# Generated from charts/wib by 'make generate'; edit the chart, not this file."
mkdir -p "$out/rbac" "$out/manager"
for f in serviceaccount clusterrole leader-election-role tenant-role webhook-role; do
  { echo "$header"; strip "$tmp/wib/templates/$f.yaml"; } > "$out/rbac/$f.yaml"
done
for f in deployment service pdb webhook; do
  { echo "$header"; strip "$tmp/wib/templates/$f.yaml"; } > "$out/manager/$f.yaml"
done
