#!/usr/bin/env bash
# Installs moto[server] (the AWS fake) at the pinned version into a virtualenv
# in the cache, outside the clone; a no-op when that version is already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(tr -d '[:space:]' < "$here/VERSION")"
cache="${WIB_CACHE:-$HOME/.cache/wib}"
venv="$cache/moto-$version"
python="${PYTHON:-python3}"
mkdir -p "$cache"
exec 9>"$cache/moto.lock"
flock 9
if [[ -x "$venv/bin/moto_server" && -f "$venv/.complete" ]]; then
  echo "$venv/bin/moto_server"
  exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version" >&2
touch "$venv/.complete"
echo "$venv/bin/moto_server"
