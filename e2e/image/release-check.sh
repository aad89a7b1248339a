#!/usr/bin/env bash
# `make test`'s release phase. The image's build stage (a static musl release
# build of wib-controller, e2e/image/build-stage.sh) is a second full
# compilation of the dependency graph with another profile and target: about
# 11 minutes on 2 cores, as much as the rest of the Rust build. Its outcome
# can change only when one of its inputs does:
#   - the Dockerfile and the build-stage script (target, command, toolchain);
#   - this script (the rule itself);
#   - Cargo.toml's release profile and the workspace's rust-version;
#   - a crate that compiles native code (one that build-depends on `cc`, and
#     `cc` itself, as Cargo.lock pins them): C is what breaks a static musl
#     link. Pure-Rust dependencies build for musl the way they build here.
# e2e/image/verified-inputs holds the digest of those inputs at the last
# passing build-stage run, committed with the change that needed it. When the
# digest is the same the build is skipped (and says so); otherwise it runs,
# and on success the file is rewritten: commit it with the change.
# `make release-build` always runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
stamp="$root/e2e/image/verified-inputs"

inputs() {
  cat "$root/Dockerfile" "$root/e2e/image/build-stage.sh" "$root/e2e/image/release-check.sh"
  python3 - "$root" <<'PY'
import sys, tomllib
root = sys.argv[1]
with open(f"{root}/Cargo.toml", "rb") as f:
    manifest = tomllib.load(f)
profiles = manifest.get("profile", {})
print("release", sorted((profiles.get("release") or {}).items()))
print("rust-version", manifest.get("workspace", {}).get("package", {}).get("rust-version"))
with open(f"{root}/Cargo.lock", "rb") as f:
    lock = tomllib.load(f)
for package in lock.get("package", []):
    deps = [d.split(" ")[0] for d in package.get("dependencies", [])]
    if package["name"] == "cc" or "cc" in deps:
        print("native", package["name"], package["version"])
PY
}

want=$(inputs | sha256sum | cut -d' ' -f1)
have=$(awk '!/^#/ && NF {print $1; exit}' "$stamp" 2>/dev/null || true)
if [ "$want" = "$have" ]; then
  echo "image build stage: inputs unchanged since its last passing run ($want); skipped (make release-build runs it)"
  exit 0
fi
echo "image build stage: inputs changed (${have:-none recorded} -> $want); running it"
bash "$root/e2e/image/build-stage.sh"
{
  echo "# Digest of the image build stage's inputs at its last passing run"
  echo "# (e2e/image/release-check.sh). Rewritten by make test; commit it."
  echo "$want"
} >"$stamp"
echo "image build stage passed; recorded $want in e2e/image/verified-inputs (commit it)"
