#!/usr/bin/env bash
# Runs the scenarios listed in e2e/in-cluster.txt against the environment
# that $WIB_E2E_CLUSTER describes (see crates/testenv/src/attached.rs), one
# at a time: they share one cluster, one operator and one set of fakes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
: "${WIB_E2E_CLUSTER:?point WIB_E2E_CLUSTER at an environment description}"
list="$root/e2e/in-cluster.txt"
status=0
for binary in $(awk '!/^#/ && NF {print $1}' "$list" | uniq); do
  mapfile -t names < <(awk -v b="$binary" '!/^#/ && $1 == b {print $2}' "$list")
  echo "==> $binary: ${#names[@]} scenario(s) against $WIB_E2E_CLUSTER"
  # --workspace, not -p wib-e2e: the same feature set as the workspace build,
  # so after `make lint` this compiles nothing (-p would rebuild the
  # dependency graph with only e2e's features).
  out=$(mktemp)
  "${CARGO:-cargo}" test --workspace --test "$binary" -- --exact --test-threads=1 "${names[@]}" 2>&1 | tee "$out" || status=1
  # A renamed scenario would otherwise be filtered out in silence.
  ran=$(awk '/^running [0-9]+ tests?$/ {n += $2} END {print n + 0}' "$out")
  rm -f "$out"
  if [ "$ran" -ne "${#names[@]}" ]; then
    echo "e2e/in-cluster.txt lists ${#names[@]} $binary scenario(s) but $ran ran: a listed name no longer exists" >&2
    status=1
  fi
done
exit "$status"
