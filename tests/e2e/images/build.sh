#!/usr/bin/env bash
# Build the images the e2e cluster itself needs, as image archives that
# `cluster up` imports into containerd's k8s.io namespace:
#   pause                   the pod sandbox (images/pause, built here)
#   busybox                 Debian's busybox-static, for test pods and provisioner helpers
#   coredns                 cluster DNS, built from its Go module
#   local-path-provisioner  hostPath PVs on demand, built from its Go module
# and, by name, the platform's images (mlflow, jupyter, jupyterhub, configurable-http-proxy,
# kserve-controller, kube-rbac-proxy),
# the observability stand-in's (prometheus-operator, prometheus-config-reloader, prometheus)
# and python-base, on which the lab_image role builds the lab runner image (platform.sh).
# Each archive is rebuilt only when its inputs change: a stamp next to it hashes the
# sources, versions and the shell functions that build it.
#
#   tests/e2e/images/build.sh [NAME...]      (default: all)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
E2E=$(dirname "$HERE")
ROOT=$(cd "$E2E/../.." && pwd)
CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mllab-e2e}
OUT=$CACHE/images
BIN=$CACHE/bin
# shellcheck source=tests/e2e/versions.env
source "$E2E/versions.env"
mkdir -p "$OUT" "$BIN"

gobuild() { # gobuild GO_ARGS...: the go command, niced (E2E_NICE), static, with the e2e build cache
  GOCACHE=$CACHE/go-build CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -gcflags=all=-dwarf=false" nice -n "${E2E_NICE:-19}" go "$@"
}

# rootfs_base DIR: the few files every image here carries.
rootfs_base() {
  local dir=$1
  rm -rf "$dir" && mkdir -p "$dir"/{bin,etc,tmp} && chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
}

# pack NAME IMAGE ROOTFS STAMP DOCKER_CHANGES...: the rootfs as an image archive.
pack() {
  local name=$1 image=$2 rootfs=$3 stamp=$4; shift 4
  local changes=() c
  for c in "$@"; do changes+=(-c "$c"); done
  tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -c . |
    docker import "${changes[@]}" - "$image" >/dev/null
  rm -f "$OUT/$name.tar" "$OUT/$name.stamp"  # the old archive goes first: disk for one, not two
  docker save "$image" -o "$OUT/$name.tar.part"
  docker rmi "$image" >/dev/null
  mv "$OUT/$name.tar.part" "$OUT/$name.tar"
  echo "$image" >"$OUT/$name.image"
  echo "$stamp" >"$OUT/$name.stamp"
  rm -rf "$rootfs"
  echo "image $image: built ($OUT/$name.tar)"
}

fresh() { # fresh NAME STAMP: true when the archive is up to date
  [[ -f $OUT/$1.tar && -f $OUT/$1.stamp && $(cat "$OUT/$1.stamp") == "$2" ]]
}

build_pause() {
  local stamp
  stamp=$(cat "$HERE/pause/go.mod" "$HERE/pause/main.go" <(declare -f rootfs_base pack build_pause) <(go version) <(echo "$PAUSE_IMAGE") | sha256sum)
  fresh pause "$stamp" && { echo "image $PAUSE_IMAGE: up to date"; return; }
  local rootfs=$OUT/pause.rootfs
  rootfs_base "$rootfs"
  (cd "$HERE/pause" && gobuild build -trimpath -ldflags '-s -w' -o "$rootfs/pause" .)
  pack pause "$PAUSE_IMAGE" "$rootfs" "$stamp" 'ENTRYPOINT ["/pause"]'
}

build_busybox() {
  local busybox=/bin/busybox stamp
  if ! [[ -x $busybox ]] || ! file -b "$busybox" | grep -q 'statically linked'; then
    echo "images/build.sh: $busybox is missing or not static: apt-get install busybox-static" >&2
    return 1
  fi
  stamp=$(cat "$busybox" <(declare -f rootfs_base pack build_busybox) <(echo "$BUSYBOX_IMAGE") | sha256sum)
  fresh busybox "$stamp" && { echo "image $BUSYBOX_IMAGE: up to date"; return; }
  local rootfs=$OUT/busybox.rootfs applet
  rootfs_base "$rootfs"
  cp "$busybox" "$rootfs/bin/busybox"
  for applet in $("$busybox" --list); do
    [[ -e $rootfs/bin/$applet ]] || ln -s busybox "$rootfs/bin/$applet"
  done
  pack busybox "$BUSYBOX_IMAGE" "$rootfs" "$stamp" 'ENV PATH=/bin' 'CMD ["/bin/sh"]'
}

# A static Go program from the module proxy, alone in its image.
build_gomod() { # build_gomod NAME MODULE VERSION IMAGE ENTRYPOINT_JSON
  local name=$1 module=$2 version=$3 image=$4 entrypoint=$5 stamp
  stamp=$(cat <(declare -f rootfs_base pack build_gomod) <(go version) <(echo "$module@$version $image $entrypoint") | sha256sum)
  fresh "$name" "$stamp" && { echo "image $image: up to date"; return; }
  local rootfs=$OUT/$name.rootfs
  rootfs_base "$rootfs"
  GOBIN=$rootfs/bin gobuild install -trimpath -ldflags '-s -w' "$module@$version"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ca-certificates.crt"
  pack "$name" "$image" "$rootfs" "$stamp" 'ENV PATH=/bin' \
    'ENV SSL_CERT_FILE=/etc/ca-certificates.crt' "ENTRYPOINT $entrypoint"
}

# Debian's python3 in a minbase rootfs: the base of the platform images.
build_python_base() {
  local stamp suite=bookworm
  stamp=$(cat <(declare -f pack build_python_base) <(echo "$PYTHON_BASE_IMAGE $suite") | sha256sum)
  fresh python-base "$stamp" && { echo "image $PYTHON_BASE_IMAGE: up to date"; return; }
  local rootfs=$OUT/python-base.rootfs
  rm -rf "$rootfs"
  nice -n "${E2E_NICE:-19}" debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" >"$OUT/python-base.debootstrap.log" 2>&1 ||
    { echo "debootstrap failed: $OUT/python-base.debootstrap.log" >&2; return 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  pack python-base "$PYTHON_BASE_IMAGE" "$rootfs" "$stamp" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'CMD ["/usr/bin/python3"]'
}

# Debian's Node.js in a minbase rootfs (trixie: configurable-http-proxy 5 needs Node >= 20,
# bookworm has 18): the base of the configurable-http-proxy image.
build_node_base() {
  local stamp suite=trixie
  stamp=$(cat <(declare -f pack build_node_base) <(echo "$NODE_BASE_IMAGE $suite") | sha256sum)
  fresh node-base "$stamp" && { echo "image $NODE_BASE_IMAGE: up to date"; return; }
  local rootfs=$OUT/node-base.rootfs
  rm -rf "$rootfs"
  nice -n "${E2E_NICE:-19}" debootstrap --variant=minbase --include=nodejs,ca-certificates \
    "$suite" "$rootfs" >"$OUT/node-base.debootstrap.log" 2>&1 ||
    { echo "debootstrap failed: $OUT/node-base.debootstrap.log" >&2; return 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  pack node-base "$NODE_BASE_IMAGE" "$rootfs" "$stamp" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'CMD ["/usr/bin/node"]'
}

# images/NAME (a Dockerfile and the files it copies) on top of the python base (or of the base
# archive named by DOCKERFILE_BASE, e.g. node-base).
build_dockerfile() { # [DOCKERFILE_BASE=node-base] build_dockerfile NAME IMAGE BUILD_ARG...
  local name=$1 image=$2 base=${DOCKERFILE_BASE:-python-base}; shift 2
  local stamp arg args=() base_image
  for arg in "$@"; do args+=(--build-arg "$arg"); done
  stamp=$(cat <(declare -f build_dockerfile) "$HERE/$name"/* "$OUT/$base.stamp" <(echo "$image $*") | sha256sum)
  fresh "$name" "$stamp" && { echo "image $image: up to date"; return; }
  base_image=$(cat "$OUT/$base.image")
  docker load -i "$OUT/$base.tar" >/dev/null
  local ctx
  ctx=$(mktemp -d)
  cp -r "$HERE/$name/." "$ctx/"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  docker build -q --network host --build-arg "BASE=$base_image" "${args[@]}" \
    -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
  # The old archive goes first: Docker stages a save in /var/lib/docker/tmp, so keeping the
  # old one would need three copies.
  rm -f "$OUT/$name.tar" "$OUT/$name.stamp"
  docker save "$image" -o "$OUT/$name.tar.part"
  # --no-prune keeps the build's layers as Docker's build cache for the next build.
  docker rmi --no-prune "$image" >/dev/null
  mv "$OUT/$name.tar.part" "$OUT/$name.tar"
  echo "$image" >"$OUT/$name.image"
  echo "$stamp" >"$OUT/$name.stamp"
  echo "image $image: built ($OUT/$name.tar)"
}

# KServe's controller (tests/e2e/kserve: the wrapper module of the pinned release), alone
# in its image as upstream ships it: static, non-root (65532, as distroless "nonroot").
build_kserve_controller() {
  "$E2E/kserve/build.sh" manager
  local manager=$CACHE/kserve/bin/manager stamp
  stamp=$(cat "$CACHE/kserve/bin/.manager.stamp" <(declare -f rootfs_base pack build_kserve_controller) \
    <(echo "$KSERVE_CONTROLLER_IMAGE") | sha256sum)
  fresh kserve-controller "$stamp" && { echo "image $KSERVE_CONTROLLER_IMAGE: up to date"; return; }
  local rootfs=$OUT/kserve-controller.rootfs
  rootfs_base "$rootfs"
  cp "$manager" "$rootfs/manager"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ca-certificates.crt"
  pack kserve-controller "$KSERVE_CONTROLLER_IMAGE" "$rootfs" "$stamp" 'USER 65532:65532' \
    'ENV SSL_CERT_FILE=/etc/ca-certificates.crt' 'ENTRYPOINT ["/manager"]'
}

# kube-rbac-proxy, the KServe controller's sidecar in the kserve-resources chart, built in
# its wrapper module (kserve/rbac-proxy), non-root like its upstream image.
build_kube_rbac_proxy() {
  local mod=$E2E/kserve/rbac-proxy stamp
  stamp=$(cat "$mod/go.mod" "$mod/go.sum" <(declare -f rootfs_base pack build_kube_rbac_proxy) <(go version) \
    <(echo "$KUBE_RBAC_PROXY_VERSION $KUBE_RBAC_PROXY_IMAGE") | sha256sum)
  fresh kube-rbac-proxy "$stamp" && { echo "image $KUBE_RBAC_PROXY_IMAGE: up to date"; return; }
  grep -q "github.com/brancz/kube-rbac-proxy $KUBE_RBAC_PROXY_VERSION" "$mod/go.mod" || {
    echo "images/build.sh: $mod/go.mod does not pin kube-rbac-proxy $KUBE_RBAC_PROXY_VERSION" >&2; return 1; }
  local rootfs=$OUT/kube-rbac-proxy.rootfs
  rootfs_base "$rootfs"
  (cd "$mod" && GOFLAGS=-mod=readonly gobuild build -trimpath -ldflags '-s -w' -o "$rootfs/bin/kube-rbac-proxy" \
    github.com/brancz/kube-rbac-proxy/cmd/kube-rbac-proxy)
  pack kube-rbac-proxy "$KUBE_RBAC_PROXY_IMAGE" "$rootfs" "$stamp" 'USER 65532:65532' \
    'ENTRYPOINT ["/bin/kube-rbac-proxy"]'
}

# The Prometheus operator and its config reloader (tests/e2e/prometheus: the wrapper module of
# the pinned release), each alone in its image at the path the operator's pods run it from
# (/bin/operator; the reloader is started as /bin/prometheus-config-reloader), non-root.
build_prometheus_operator() { # build_prometheus_operator NAME CMD IMAGE
  local name=$1 cmd=$2 image=$3 mod=$E2E/prometheus stamp
  stamp=$(cat "$mod/go.mod" "$mod/go.sum" <(declare -f rootfs_base pack build_prometheus_operator) <(go version) \
    <(echo "$PROMETHEUS_OPERATOR_VERSION $cmd $image") | sha256sum)
  fresh "$name" "$stamp" && { echo "image $image: up to date"; return; }
  grep -q "github.com/prometheus-operator/prometheus-operator $PROMETHEUS_OPERATOR_VERSION" "$mod/go.mod" || {
    echo "images/build.sh: $mod/go.mod does not pin prometheus-operator $PROMETHEUS_OPERATOR_VERSION" >&2; return 1; }
  local rootfs=$OUT/$name.rootfs
  rootfs_base "$rootfs"
  # The version as the release's Makefile stamps it (the operator reports it and labels with it).
  (cd "$mod" && GOFLAGS=-mod=readonly gobuild build -trimpath -o "$rootfs/bin/$cmd" \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_OPERATOR_VERSION#v}" \
    "github.com/prometheus-operator/prometheus-operator/cmd/$cmd")
  pack "$name" "$image" "$rootfs" "$stamp" 'USER 65534:65534' "ENTRYPOINT [\"/bin/$cmd\"]"
}

# Prometheus itself (tests/e2e/prometheus/server: the wrapper module of the release
# kube-prometheus-stack 77.6.2 runs), static, as /bin/prometheus like the upstream image (the
# operator passes only arguments). Debian's package cannot stand in: it is built without
# Kubernetes service discovery, and refuses the operator's kubernetes_sd_configs.
build_prometheus() {
  local mod=$E2E/prometheus/server stamp
  stamp=$(cat "$mod/go.mod" "$mod/go.sum" <(declare -f rootfs_base pack build_prometheus) <(go version) \
    <(echo "$PROMETHEUS_VERSION $PROMETHEUS_IMAGE") | sha256sum)
  fresh prometheus "$stamp" && { echo "image $PROMETHEUS_IMAGE: up to date"; return; }
  grep -q "github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION" "$mod/go.mod" || {
    echo "images/build.sh: $mod/go.mod does not pin prometheus $PROMETHEUS_MODULE_VERSION" >&2; return 1; }
  local rootfs=$OUT/prometheus.rootfs
  rootfs_base "$rootfs"
  mkdir -p "$rootfs/prometheus"  # where the operator mounts its storage
  (cd "$mod" && GOFLAGS=-mod=readonly gobuild build -trimpath -o "$rootfs/bin/prometheus" \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}" \
    github.com/prometheus/prometheus/cmd/prometheus)
  pack prometheus "$PROMETHEUS_IMAGE" "$rootfs" "$stamp" 'USER 65534:65534' 'WORKDIR /prometheus' \
    'ENTRYPOINT ["/bin/prometheus"]'
}

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(pause busybox coredns local-path-provisioner)
for name in "${names[@]}"; do
  case $name in
    pause) build_pause ;;
    busybox) build_busybox ;;
    coredns) build_gomod coredns github.com/coredns/coredns "$COREDNS_VERSION" \
               "$COREDNS_IMAGE" '["/bin/coredns"]' ;;
    local-path-provisioner) build_gomod local-path-provisioner \
               github.com/rancher/local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION" \
               "$LOCAL_PATH_PROVISIONER_IMAGE" '["/bin/local-path-provisioner"]' ;;
    python-base) build_python_base ;;
    mlflow) build_python_base
            build_dockerfile mlflow "$MLFLOW_IMAGE" "MLFLOW_VERSION=$MLFLOW_VERSION" ;;
    jupyter) build_python_base
             build_dockerfile jupyter "$JUPYTER_IMAGE" "JUPYTERLAB_VERSION=$JUPYTERLAB_VERSION" \
               "JUPYTERHUB_VERSION=$JUPYTERHUB_VERSION" ;;
    jupyterhub) build_python_base
                build_dockerfile jupyterhub "$JUPYTERHUB_IMAGE" "JUPYTERHUB_VERSION=$JUPYTERHUB_VERSION" \
                  "KUBESPAWNER_VERSION=$KUBESPAWNER_VERSION" "IDLE_CULLER_VERSION=$IDLE_CULLER_VERSION" ;;
    node-base) build_node_base ;;
    configurable-http-proxy) build_node_base
                DOCKERFILE_BASE=node-base build_dockerfile configurable-http-proxy "$CHP_IMAGE" \
                  "CHP_VERSION=$CHP_VERSION" ;;
    kserve-controller) build_kserve_controller ;;
    kube-rbac-proxy) build_kube_rbac_proxy ;;
    prometheus-operator) build_prometheus_operator prometheus-operator operator "$PROMETHEUS_OPERATOR_IMAGE" ;;
    prometheus-config-reloader) build_prometheus_operator prometheus-config-reloader \
               prometheus-config-reloader "$PROMETHEUS_CONFIG_RELOADER_IMAGE" ;;
    prometheus) build_prometheus ;;
    *) echo "images/build.sh: unknown image '$name' (pause, busybox, coredns, local-path-provisioner, python-base, mlflow, jupyter, jupyterhub, node-base, configurable-http-proxy, kserve-controller, kube-rbac-proxy, prometheus-operator, prometheus-config-reloader, prometheus)" >&2
       exit 2 ;;
  esac
done
