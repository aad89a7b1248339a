#!/usr/bin/env bash
# The in-cluster scenarios against `wib-localenv` (control plane, fakes and
# operator as processes, as `make run` starts them): proves the attached
# mode `make e2e-kind` relies on, on a machine without Docker.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d -t wib-attached-XXXXXX)
"$target/debug/wib-localenv" \
  --operator "$target/debug/wib-controller" \
  --samples "$root/config/samples" \
  --kubeconfig-out "$work/kubeconfig" \
  --describe "$work/cluster.json" \
  --resync-seconds 2 \
  --gcp-project wib-e2e >"$work/localenv.log" 2>&1 &
localenv=$!
stop() {
  kill -TERM "$localenv" 2>/dev/null || true
  wait "$localenv" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT
for _ in $(seq 1 180); do
  [ -f "$work/cluster.json" ] && break
  if ! kill -0 "$localenv" 2>/dev/null; then cat "$work/localenv.log" >&2; exit 1; fi
  sleep 1
done
[ -f "$work/cluster.json" ] || { echo "wib-localenv did not come up:" >&2; cat "$work/localenv.log" >&2; exit 1; }
WIB_E2E_CLUSTER="$work/cluster.json" bash "$root/e2e/in-cluster.sh"
