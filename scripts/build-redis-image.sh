#!/usr/bin/env bash
# Builds a redis image without a registry: Debian's `redis-server` and `redis-cli`, the shared
# libraries they link, and a static busybox for `sh`, loaded with `docker import`. The server
# binary comes from the redis-tools package (/usr/bin/redis-check-rdb: one binary that acts as
# redis-server when invoked under that name), so nothing installs the redis-server package and
# no redis service is ever started on the host. Run it with `--dir /data` on a volume.
#   scripts/build-redis-image.sh [IMAGE]     (default berth-test-redis:1); idempotent.
set -euo pipefail
IMAGE="${1:-berth-test-redis:1}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
apt_updated=
apt_install() {
  echo "build-redis-image: installing $*" >&2
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  apt-get install -y -qq "$@" >/dev/null
}
# redis-tools holds redis-cli and the server binary; it has no service to start.
{ [ -x /usr/bin/redis-cli ] && [ -x /usr/bin/redis-check-rdb ]; } || apt_install redis-tools
command -v busybox >/dev/null 2>&1 || apt_install busybox-static
server=$(readlink -f /usr/bin/redis-check-rdb)
cli=$(readlink -f /usr/bin/redis-cli)

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/usr/bin" "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/data"
chmod 1777 "$rootfs/tmp"
# Redis picks its mode from argv[0]: copied as redis-server, the binary is the server.
cp "$server" "$rootfs/usr/bin/redis-server"
cp "$cli" "$rootfs/usr/bin/redis-cli"
# Every library both link, plus the dynamic loader, at the same paths as on the host.
for lib in $(ldd "$server" "$cli" | grep -v ':$' | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp "$(readlink -f "$(command -v busybox)")" "$rootfs/bin/busybox"
for applet in sh cat ls echo sleep touch wget env mkdir; do ln -s busybox "$rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . \
  | docker import -c 'ENV PATH=/usr/bin:/bin' -c 'WORKDIR /data' - "$IMAGE" >/dev/null
echo "build-redis-image: built $IMAGE from $server ($("$cli" --version))" >&2
