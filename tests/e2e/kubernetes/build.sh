#!/usr/bin/env bash
# Build the upstream Kubernetes binaries of the e2e tier from the Go module proxy.
#
#   tests/e2e/kubernetes/build.sh [OUT_DIR]     (default: $E2E_CACHE/bin)
#
# The wrapper module next to this script pins k8s.io/kubernetes and maps every
# staging module (k8s.io/api, k8s.io/client-go, ...) to its published release. Its
# main.go links the six commands into one multi-call binary, `kube` (one link instead
# of six: most of a warm-module build's time), and each command's name is a link to it.
# The version, commit and date come from the proxy's record of the pinned tag, so
# `kubectl version` and Helm see the real version. A warm rebuild is a no-op: the
# binaries are stamped with a hash of everything that goes into them.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
ROOT=$(cd "$HERE/../../.." && pwd)
CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mllab-e2e}
OUT=${1:-$CACHE/bin}
CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

cd "$HERE"
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' go.mod)
[[ $version =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || {
  echo "build.sh: cannot read the k8s.io/kubernetes version from $HERE/go.mod" >&2; exit 1; }
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}

up_to_date() {
  [[ -f $OUT/.stamp && $(cat "$OUT/.stamp") == "$1" ]] || return 1
  local c; for c in "${CMDS[@]}"; do [[ -x $OUT/$c ]] || return 1; done
}
stamp_want=$(cat go.mod go.sum main.go release.env "$SELF" <(go version) | sha256sum | cut -d' ' -f1)
if up_to_date "$stamp_want"; then
  echo "kubernetes $version: up to date in $OUT"
  exit 0
fi

# Commit (release.env) and date (the proxy's .info) of the pinned tag.
# shellcheck source=tests/e2e/kubernetes/release.env
source "$HERE/release.env"
[[ $KUBERNETES_TAG == "$version" ]] || {
  echo "build.sh: go.mod pins $version but release.env describes $KUBERNETES_TAG" >&2; exit 1; }
commit=$KUBERNETES_COMMIT
info=$(go mod download -json "k8s.io/kubernetes@$version")
date=$(python3 -c 'import json,sys; print(json.load(open(json.load(sys.stdin)["Info"]))["Time"])' <<<"$info")

ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
done

mkdir -p "$OUT"
rm -f "$OUT/.stamp"
echo "kubernetes $version ($commit): building ${CMDS[*]} into $OUT (one binary, kube)"
start=$(date +%s)
GOCACHE=$CACHE/go-build CGO_ENABLED=0 GOFLAGS=-mod=readonly nice -n "${E2E_NICE:-19}" \
  go build -trimpath -gcflags=all=-dwarf=false -ldflags "$ldflags" -o "$OUT/kube" .
for c in "${CMDS[@]}"; do ln -sfn kube "$OUT/$c"; done
echo "$stamp_want" >"$OUT/.stamp"
echo "kubernetes $version: built in $(( $(date +%s) - start )) s"
