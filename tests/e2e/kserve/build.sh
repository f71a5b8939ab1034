#!/usr/bin/env bash
# KServe for the e2e tier, from the Go module proxy (see tests/e2e/README.md):
#
#   tests/e2e/kserve/build.sh [manager|crds|charts|prometheus-crds|all]     (default: all)
#
#   manager  the controller (github.com/kserve/kserve/cmd/manager) -> $OUT/bin/manager
#   crds     the serving.kserve.io CRDs generated from the release's API types by
#            controller-gen (the version the release's kserve-deps.env names), edited as
#            the release's `make manifests` does (crds.py), then compared with the CRDs
#            the release ships: the build fails when they differ -> $OUT/crds/
#   charts   the release's charts kserve-crd (its CRDs replaced by the generated ones),
#            kserve-resources and kserve-runtime-configs -> $OUT/charts/ (the kserve
#            role's kserve_chart_source: dir)
#   prometheus-crds  the ServiceMonitor, PodMonitor and PrometheusRule CRDs generated from
#            prometheus-operator's API types (prometheus-crds/go.mod: the release
#            kube-prometheus-stack 77.6.2 runs) by the controller-gen its CRDs name,
#            compared with the ones it ships -> $OUT/prometheus-crds/
#
# $OUT = $E2E_CACHE/kserve. The wrapper module next to this script pins the release and
# repeats its replace directives. Each output is stamped with a hash of its inputs, so a
# warm rebuild is a no-op.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
E2E=$(dirname "$HERE")
ROOT=$(cd "$E2E/../.." && pwd)
CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mllab-e2e}
OUT=$CACHE/kserve
BIN=$CACHE/bin
PYTHON=${PYTHON:-python3}
# shellcheck source=tests/e2e/versions.env
source "$E2E/versions.env"

# One build at a time: the unit tier (test_kserve_crds.py) and the e2e tier may ask for the
# same outputs at once (.ci/run runs them side by side).
mkdir -p "$CACHE"
exec 9>"$CACHE/.kserve-build.lock"
flock 9

cd "$HERE"
version=$(awk '$1 == "github.com/kserve/kserve" {print $2} $1 == "require" && $2 == "github.com/kserve/kserve" {print $3}' go.mod)
[[ $version == "$KSERVE_VERSION" ]] || {
  echo "kserve/build.sh: go.mod pins github.com/kserve/kserve $version, versions.env says $KSERVE_VERSION" >&2; exit 1; }
export GOCACHE=$CACHE/go-build CGO_ENABLED=0 GOFLAGS="-mod=readonly -gcflags=all=-dwarf=false"
moddir() { go mod download -json "$1" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }
stamp_of() { # stamp_of WHAT...: hash of the wrapper module, this script, Go, and WHAT
  cat go.mod go.sum "$SELF" <(go version) <(echo "$@") | sha256sum | cut -d' ' -f1; }
fresh() { [[ -f $1 && $(cat "$1") == "$2" ]]; }

build_manager() {
  local stamp start
  stamp=$(stamp_of manager)
  if fresh "$OUT/bin/.manager.stamp" "$stamp" && [[ -x $OUT/bin/manager ]]; then
    echo "kserve $version controller: up to date"; return; fi
  mkdir -p "$OUT/bin" && rm -f "$OUT/bin/.manager.stamp"
  echo "kserve $version controller: building github.com/kserve/kserve/cmd/manager"
  start=$(date +%s)
  nice -n "${E2E_NICE:-19}" go build -trimpath -ldflags '-s -w' -o "$OUT/bin/manager" github.com/kserve/kserve/cmd/manager
  echo "$stamp" >"$OUT/bin/.manager.stamp"
  echo "kserve $version controller: built in $(( $(date +%s) - start )) s"
}

controller_gen() { # controller_gen VERSION: that controller-gen, into $BIN as $CONTROLLER_GEN
  local want=$1
  CONTROLLER_GEN=$BIN/controller-gen-$want
  [[ -x $CONTROLLER_GEN ]] && return
  echo "controller-gen $want: building sigs.k8s.io/controller-tools/cmd/controller-gen"
  local tmp; tmp=$(mktemp -d)
  GOFLAGS= GOBIN=$tmp nice -n "${E2E_NICE:-19}" go install -trimpath -ldflags '-s -w' \
    "sigs.k8s.io/controller-tools/cmd/controller-gen@$want"
  mkdir -p "$BIN" && mv "$tmp/controller-gen" "$CONTROLLER_GEN" && rmdir "$tmp"
}

kserve_controller_gen() { # the controller-gen of the release's kserve-deps.env
  local dir want
  dir=$(moddir "github.com/kserve/kserve@$version")
  want=$(sed -n 's/^CONTROLLER_TOOLS_VERSION=//p' "$dir/kserve-deps.env")
  [[ -n $want ]] || { echo "kserve/build.sh: no CONTROLLER_TOOLS_VERSION in $dir/kserve-deps.env" >&2; exit 1; }
  controller_gen "$want"
}

build_crds() {
  kserve_controller_gen
  local stamp dir
  stamp=$(stamp_of crds "$CONTROLLER_GEN" "$(sha256sum <"$HERE/crds.py")")
  if fresh "$OUT/crds/.stamp" "$stamp"; then echo "kserve $version CRDs: up to date"; return; fi
  dir=$(moddir "github.com/kserve/kserve@$version")
  rm -rf "$OUT/crds" "$OUT/crds.gen" && mkdir -p "$OUT/crds.gen"
  echo "kserve $version CRDs: generating from github.com/kserve/kserve/pkg/apis/serving/... ($(basename "$CONTROLLER_GEN"))"
  # The options of the release's Makefile (CRD_OPTIONS: descriptions left out).
  nice -n "${E2E_NICE:-19}" "$CONTROLLER_GEN" crd:maxDescLen=0 paths=github.com/kserve/kserve/pkg/apis/serving/... \
    output:crd:dir="$OUT/crds.gen"
  "$PYTHON" "$HERE/crds.py" postprocess "$OUT/crds.gen" "$OUT/crds"
  rm -rf "$OUT/crds.gen"
  "$PYTHON" "$HERE/crds.py" compare "$OUT/crds" "$dir/config/crd/full"
  echo "$stamp" >"$OUT/crds/.stamp"
}

build_charts() {
  build_crds
  local stamp dir chart name
  stamp=$(stamp_of charts "$(cat "$OUT/crds/.stamp")")
  if fresh "$OUT/charts/.stamp" "$stamp"; then echo "kserve $version charts: up to date"; return; fi
  dir=$(moddir "github.com/kserve/kserve@$version")
  rm -rf "$OUT/charts" && mkdir -p "$OUT/charts"
  for chart in kserve-crd kserve-resources kserve-runtime-configs; do
    cp -r "$dir/charts/$chart" "$OUT/charts/$chart"
  done
  chmod -R u+w "$OUT/charts"
  # kserve-crd: the generated CRDs in place of the shipped ones (the ClusterStorageContainer
  # CRD is a file its template reads).
  for name in "$OUT"/crds/*.yaml; do
    name=$(basename "$name")
    if [[ -f $OUT/charts/kserve-crd/templates/$name && $name != *clusterstoragecontainers* ]]; then
      cp "$OUT/crds/$name" "$OUT/charts/kserve-crd/templates/$name"
    elif [[ -f $OUT/charts/kserve-crd/files/$name ]]; then
      cp "$OUT/crds/$name" "$OUT/charts/kserve-crd/files/$name"
    else
      echo "kserve/build.sh: the kserve-crd chart has no place for $name" >&2; exit 1
    fi
  done
  echo "$stamp" >"$OUT/charts/.stamp"
  echo "kserve $version charts: $OUT/charts (kserve-crd with the generated CRDs)"
}

build_prometheus_crds() {
  local mod=$HERE/prometheus-crds apis_version shipped want stamp kind
  apis_version=$(awk '$1 == "require" && $2 ~ /pkg\/apis\/monitoring$/ {print $3}' "$mod/go.mod")
  shipped=$(moddir "github.com/prometheus-operator/prometheus-operator@$apis_version")/example/prometheus-operator-crd
  # The controller-gen that made the shipped CRDs (their controller-gen.kubebuilder.io/version).
  want=$(sed -n 's/^ *controller-gen.kubebuilder.io\/version: //p' "$shipped/monitoring.coreos.com_servicemonitors.yaml")
  controller_gen "$want"
  stamp=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/crds.go" "$SELF" "$HERE/crds.py" <(go version) <(echo "$CONTROLLER_GEN") |
    sha256sum | cut -d' ' -f1)
  if fresh "$OUT/prometheus-crds/.stamp" "$stamp"; then echo "prometheus-operator $apis_version CRDs: up to date"; return; fi
  rm -rf "$OUT/prometheus-crds" "$OUT/prometheus-crds.gen" && mkdir -p "$OUT/prometheus-crds"
  echo "prometheus-operator $apis_version CRDs: generating ($(basename "$CONTROLLER_GEN"))"
  # The options of the release's Makefile (CRD_OPTIONS, generate-crds).
  (cd "$mod" && nice -n "${E2E_NICE:-19}" "$CONTROLLER_GEN" crd:crdVersions=v1 \
    paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
    output:crd:dir="$OUT/prometheus-crds.gen")
  for kind in servicemonitors podmonitors prometheusrules; do
    cp "$OUT/prometheus-crds.gen/monitoring.coreos.com_$kind.yaml" "$OUT/prometheus-crds/"
  done
  rm -rf "$OUT/prometheus-crds.gen"
  "$PYTHON" "$HERE/crds.py" prometheus-version "$OUT/prometheus-crds" "$apis_version"
  "$PYTHON" "$HERE/crds.py" compare-prometheus "$OUT/prometheus-crds" "$shipped"
  echo "$stamp" >"$OUT/prometheus-crds/.stamp"
}

case ${1:-all} in
  manager) build_manager ;;
  crds) build_crds ;;
  charts) build_charts ;;
  prometheus-crds) build_prometheus_crds ;;
  all) build_manager; build_charts; build_prometheus_crds ;;
  *) echo "usage: $0 [manager|crds|charts|prometheus-crds|all]" >&2; exit 2 ;;
esac
