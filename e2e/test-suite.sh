#!/usr/bin/env bash
# `make test`: every phase in order, each timed, then a table of the phases
# and the closing `tests: N passed, N failed` line (printed last, also when a
# phase fails). A failing build phase stops the run (nothing after it could
# pass); the two test phases both run, like cargo's --no-fail-fast.
#
# Each phase is a make target of its own, so any one can be run alone.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${WIB_CACHE:-$HOME/.cache/wib}
make=${MAKE:-make}
mkdir -p "$cache"
log="$cache/test.log"
: >"$log"

names=()
seconds=()
results=()
suite_start=$(date +%s)

# phase NAME TARGET: runs `make TARGET`, output to the terminal and, for
# the test phases, to the log the closing line counts.
phase() {
  local name=$1 target=$2 start status
  echo "==> $name (make $target)"
  start=$(date +%s)
  "$make" --no-print-directory -C "$root" "$target" 2>&1 | tee -a "$log"
  status=${PIPESTATUS[0]}
  names+=("$name")
  seconds+=($(($(date +%s) - start)))
  if [ "$status" -eq 0 ]; then results+=(ok); else results+=("FAILED ($status)"); fi
  return "$status"
}

report() {
  local total=$(($(date +%s) - suite_start)) i
  echo
  echo "make test phases (wall time):"
  printf '  %-44s %9s  %s\n' phase time result
  for i in "${!names[@]}"; do
    printf '  %-44s %6dm%02ds  %s\n' "${names[$i]}" $((seconds[i] / 60)) $((seconds[i] % 60)) "${results[$i]}"
  done
  printf '  %-44s %6dm%02ds\n' total $((total / 60)) $((total % 60))
  # The one line CI reads: every test binary's results, summed. Its exit
  # status says whether they are all green (and that some test ran).
  awk '/^test result:/ {p += $4; f += $6} END {printf "tests: %d passed, %d failed\n", p, f; exit (f > 0 || p == 0)}' "$log"
}

run() {
  phase "fmt" fmt || return 1
  phase "go: kubernetes + etcd" controlplane || return 1
  phase "go: helm" helm || return 1
  phase "go: kstatus" kstatus || return 1
  phase "moto (PyPI)" moto || return 1
  phase "official Python SDKs (PyPI)" sdks || return 1
  phase "clippy + build (one compilation)" lint || return 1
  phase "image build stage (if its inputs changed)" release-check || return 1
  local failed=0
  phase "tests (unit, integration, e2e)" tests || failed=1
  phase "attached scenarios (e2e/in-cluster.txt)" e2e-attached || failed=1
  phase "bench smoke (100 AWS bindings, 100 pods)" bench-smoke || failed=1
  return "$failed"
}

run
status=$?
report || status=1
exit "$status"
