#!/usr/bin/env bash
# Build a local Debian systemd image for molecule, from Debian's mirror only
# (no container registry needed): debootstrap a minimal rootfs, docker import it.
#
#   tests/molecule/build-image.sh bookworm   -> mllab-systemd:bookworm
#   tests/molecule/build-image.sh trixie     -> mllab-systemd:trixie
#
# Skips the build when an image built by this exact script already exists
# (the script's checksum is stored as an image label). Set MOLECULE_IMAGE to use
# another image instead (e.g. a registry image on hosts that can pull).
set -euo pipefail
suite=${1:?usage: build-image.sh bookworm|trixie}
image="mllab-systemd:${suite}"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
sum=$(sha256sum "$0" | cut -c1-16)

if [ "$(docker image inspect -f '{{ index .Config.Labels "mllab.build" }}' "$image" 2>/dev/null)" = "$sum" ]; then
  echo "image $image is up to date"
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "ERROR: debootstrap is missing. Fix: sudo apt-get install debootstrap" >&2; exit 1; }

root=$(mktemp -d /tmp/mllab-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap $suite into $root (about 2 minutes)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps \
  "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# A container has no consoles or udev to wait for.
for unit in getty.target systemd-udevd.service systemd-udev-trigger.service \
            systemd-remount-fs.service console-getty.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
printf '%s\n' "deb $mirror $suite main" >"$root/etc/apt/sources.list"
tar -C "$root" -c . | docker import \
  -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' \
  -c "LABEL mllab.build=$sum" - "$image" >/dev/null
echo "built $image"
