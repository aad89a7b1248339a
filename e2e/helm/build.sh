#!/usr/bin/env bash
# helm at the version pinned in go.mod, for `helm lint` / `helm template` in
# the tests; built once into the cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1=="helm.sh/helm/v4"{print $2; exit}' "$here/go.mod")
exec bash "$here/../build-go-tool.sh" "$here" helm.sh/helm/v4/cmd/helm helm \
  "-X helm.sh/helm/v4/internal/version.version=$version"
