#!/usr/bin/env bash
# Installs the official Python SDKs (e2e/sdk/requirements.txt) into a
# virtualenv in the cache, outside the clone, keyed by the requirements'
# digest; prints its python. A no-op when that virtualenv is complete.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
digest="$(sha256sum "$here/requirements.txt" | cut -c1-12)"
cache="${WIB_CACHE:-$HOME/.cache/wib}"
venv="$cache/sdk-$digest"
python="${PYTHON:-python3}"
mkdir -p "$cache"
exec 9>"$cache/sdk.lock"
flock 9
if [[ -x "$venv/bin/python" && -f "$venv/.complete" ]]; then
  echo "$venv/bin/python"
  exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
touch "$venv/.complete"
echo "$venv/bin/python"
