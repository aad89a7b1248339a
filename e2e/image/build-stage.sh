#!/usr/bin/env bash
# The Dockerfile's build stage outside Docker: the same command for the same
# target (x86_64-unknown-linux-musl, a static binary), so `make test` proves
# the image builds without a Docker engine (for this machine's architecture,
# as the Dockerfile does for the builder's). The musl std comes from rustup
# and musl-gcc (for C dependencies) from Debian's musl-tools; where either
# cannot be installed, the host target is built instead, and said so.
set -euo pipefail
target=${RELEASE_TARGET:-$(uname -m)-unknown-linux-musl}
cargo=${CARGO:-cargo}
out=${CARGO_TARGET_DIR:-target}

have_target() {
  rustup target list --installed 2>/dev/null | grep -qx "$target" \
    || rustup target add "$target" >&2
}
have_musl_gcc() {
  command -v musl-gcc >/dev/null && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  $sudo apt-get install -y --no-install-recommends musl-tools >&2 \
    || { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends musl-tools >&2; }
}

if have_target && have_musl_gcc; then
  "$cargo" build --release --locked --target "$target" -p wib-controller
  binary="$out/$target/release/wib-controller"
  # What distroless/static needs: no dynamic section asking for libraries.
  if readelf -d "$binary" | grep -q NEEDED; then
    echo "$binary links shared libraries:" >&2
    readelf -d "$binary" | grep NEEDED >&2
    exit 1
  fi
  echo "static $target build: $binary"
else
  echo "note: $target or musl-gcc unavailable here; building the host target instead" >&2
  "$cargo" build --release --locked -p wib-controller
fi
