#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the
# pinned Go modules in this folder into a cache outside the clone. A stamp of
# go.mod/go.sum decides whether the cached binaries are current, so a second
# run is a no-op and a version bump rebuilds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s_version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
etcd_version=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/go.mod")
cache=${WIB_CACHE:-$HOME/.cache/wib}
out="$cache/k8s-$k8s_version/bin"
stamp="$out/.stamp"
want=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
# Test binaries may ask for the binaries at the same time: build once.
exec 9>"$out/.lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$out"
  exit 0
fi
major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# The same variables the Kubernetes release build stamps, so `kubectl version`
# and /version report the real release instead of v0.0.0-master.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$now"
done

cd "$here"
start=$(date +%s)
export CGO_ENABLED=0
# One invocation for the four commands: the go command schedules their
# packages and links together instead of finishing one graph before the next.
# etcd's main package ends in a major-version element, so go names it after
# the element before it ("server").
go build -trimpath -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl \
  go.etcd.io/etcd/server/v3 >&2
mv "$out/server" "$out/etcd"
echo "$want" > "$stamp"
echo "built kubernetes $k8s_version and etcd $etcd_version in $(( $(date +%s) - start ))s" >&2
echo "$out"
