#!/usr/bin/env bash
# Builds a node image without a registry: the host's `node` binary, the shared libraries it
# links, and a static busybox for `sh`, loaded with `docker import`. Used by the reconcile
# tests and the node-lite example as the node-lite-v1 image override.
#   scripts/build-node-image.sh [IMAGE]     (default berth-test-node:1); idempotent.
set -euo pipefail
IMAGE="${1:-berth-test-node:1}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
node=$(command -v node || true)
if [ -z "$node" ]; then
  echo "build-node-image: installing nodejs" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null
  node=$(command -v node)
fi
node=$(readlink -f "$node")
command -v busybox >/dev/null 2>&1 || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
}

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/usr/bin" "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
cp "$node" "$rootfs/usr/bin/node"
# Every library node links, plus the dynamic loader, at the same paths as on the host.
for lib in $(ldd "$node" | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp "$(readlink -f "$(command -v busybox)")" "$rootfs/bin/busybox"
for applet in sh cat ls echo sleep touch wget env; do ln -s busybox "$rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . \
  | docker import -c 'ENV PATH=/usr/bin:/bin' - "$IMAGE" >/dev/null
echo "build-node-image: built $IMAGE from $node ($("$node" --version))" >&2
