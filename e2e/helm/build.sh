#!/usr/bin/env bash
# Builds helm from the Go module pinned in this folder into a cache outside
# the clone, for `helm lint` / `helm template` in the tests; a no-op when the
# pinned version is already built.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1=="helm.sh/helm/v4"{print $2; exit}' "$here/go.mod")
cache=${WIB_CACHE:-$HOME/.cache/wib}
out="$cache/helm-$version/bin"
stamp="$out/.stamp"
want=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -d' ' -f1)
current() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }

if current; then echo "$out/helm"; exit 0; fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if current; then echo "$out/helm"; exit 0; fi
cd "$here"
start=$(date +%s)
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
  -o "$out/helm" helm.sh/helm/v4/cmd/helm >&2
echo "$want" > "$stamp"
echo "built helm $version in $(( $(date +%s) - start ))s" >&2
echo "$out/helm"
