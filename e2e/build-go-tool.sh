#!/usr/bin/env bash
# Builds one Go command from a pinned module folder under e2e/ into the cache
# outside the clone and prints the binary's path. A stamp of go.mod/go.sum
# (and the folder's .go files) decides whether the cached binary is current.
#   usage: build-go-tool.sh <module dir> <package> <name> [extra ldflags]
set -euo pipefail
dir=$(cd "$1" && pwd)
package=$2
name=$3
ldflags="-s -w ${4:-}"
cache=${WIB_CACHE:-$HOME/.cache/wib}
shopt -s nullglob
want=$(cat "$dir/go.mod" "$dir/go.sum" "$dir"/*.go | sha256sum | cut -d' ' -f1)
out="$cache/tools/$name-${want:0:12}"
current() { [ -x "$out/$name" ] && [ -f "$out/.complete" ]; }

if current; then echo "$out/$name"; exit 0; fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if current; then echo "$out/$name"; exit 0; fi
cd "$dir"
start=$(date +%s)
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$name" "$package" >&2
touch "$out/.complete"
echo "built $name in $(( $(date +%s) - start ))s" >&2
echo "$out/$name"
