#!/usr/bin/env bash
# Builds the image the reconcile tests run: `berth-test-busybox:1`, a ~2 MB rootfs holding only
# a static busybox, its applet symlinks and an empty /tmp, loaded with `docker import` (no
# registry, no network). Idempotent: exits 0 at once when the image already exists.
set -euo pipefail

IMAGE="${BERTH_TEST_IMAGE:-berth-test-busybox:1}"
APPLETS=(sh sleep httpd echo cat env true false wget nc ls mkdir touch)

if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "build-test-image: no Docker engine answers (run scripts/ensure-docker.sh)" >&2
  exit 1
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi

busybox=/bin/busybox
if [ ! -x "$busybox" ] || ! "$busybox" --list 2>/dev/null | grep -qx sleep; then
  echo "build-test-image: installing busybox-static" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq busybox-static >/dev/null
fi
# The image has no libc: a dynamically linked busybox would not start in it.
if ldd "$busybox" >/dev/null 2>&1; then
  echo "build-test-image: $busybox is dynamically linked; install busybox-static" >&2
  exit 1
fi

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
chmod 755 "$rootfs/bin/busybox"
for applet in "${APPLETS[@]}"; do
  ln -s busybox "$rootfs/bin/$applet"
done

tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . \
  | docker import - "$IMAGE" >/dev/null
echo "build-test-image: built $IMAGE" >&2
