#!/usr/bin/env bash
# The kstatus checker (main.go), built once into the cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../build-go-tool.sh" "$here" . kstatus
