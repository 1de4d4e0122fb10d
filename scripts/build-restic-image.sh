#!/usr/bin/env bash
# Builds the image berth runs restic in (docs/guides/backups-and-recovery.md) without a
# registry: Debian's `restic` binary, the libraries it links (the package's build links libc)
# and a static busybox for `sh`, `rm` and `cat`, loaded with `docker import`. berth's backup
# and restore jobs run `restic` in one-off containers of it, as root with only the
# capabilities a copy that keeps owners and modes needs.
#   scripts/build-restic-image.sh [IMAGE]     (default berth-restic:1); idempotent.
set -euo pipefail
IMAGE="${1:-berth-restic:1}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
apt_updated=
apt_install() {
  echo "build-restic-image: installing $*" >&2
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  apt-get install -y -qq "$@" >/dev/null
}
command -v restic >/dev/null 2>&1 || apt_install restic
command -v busybox >/dev/null 2>&1 || apt_install busybox-static
restic=$(readlink -f "$(command -v restic)")

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/usr/bin" "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/root"
chmod 1777 "$rootfs/tmp"
cp "$restic" "$rootfs/usr/bin/restic"
for lib in $(ldd "$restic" 2>/dev/null | grep -v ':$' | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp "$(readlink -f "$(command -v busybox)")" "$rootfs/bin/busybox"
for applet in sh cat ls echo rm mkdir find wc sha256sum stat; do ln -s busybox "$rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . \
  | docker import -c 'ENV PATH=/usr/bin:/bin' -c 'ENV HOME=/root' -c 'WORKDIR /' - "$IMAGE" >/dev/null
echo "build-restic-image: built $IMAGE from $restic ($("$restic" version))" >&2
