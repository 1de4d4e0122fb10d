#!/usr/bin/env bash
# Builds a PostgreSQL image without a registry: Debian's PostgreSQL server and client binaries
# (/usr/lib/postgresql/<major>/bin), their extension libraries and share files, the shared
# libraries they link, the zone database and a static busybox for `sh`, loaded with `docker
# import`. The image runs as user `postgres` (uid 999), which owns /var/lib/postgresql, so a
# fresh named volume mounted there is the server's to write. The `postgresql` package is
# installed on the host when missing, and its service is never started: the package's own
# cluster is not created (`create_main_cluster = false`) and a policy-rc.d refuses every start.
#   scripts/build-postgres-image.sh [IMAGE]     (default berth-test-postgres:1); idempotent.
set -euo pipefail
IMAGE="${1:-berth-test-postgres:1}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
apt_updated=
apt_install() {
  echo "build-postgres-image: installing $*" >&2
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  apt-get install -y -qq "$@" >/dev/null
}
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  # No host cluster and no service start: only the binaries are wanted.
  mkdir -p /etc/postgresql-common
  grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
    || echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
  policy_made=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  apt_install postgresql
  [ -z "$policy_made" ] || rm -f /usr/sbin/policy-rc.d
fi
command -v busybox >/dev/null 2>&1 || apt_install busybox-static
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
major=$(basename "$(dirname "$bindir")")
libdir=/usr/lib/postgresql/$major/lib
sharedir=/usr/share/postgresql/$major

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs$bindir" "$rootfs$libdir" "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" \
  "$rootfs/usr/share" "$rootfs/var/run/postgresql" "$rootfs/var/lib/postgresql/data"
chmod 1777 "$rootfs/tmp"
bins=()
for b in postgres initdb pg_ctl psql pg_dump pg_restore pg_isready; do
  cp "$bindir/$b" "$rootfs$bindir/$b"
  bins+=("$bindir/$b")
done
# Extension and encoding libraries; the JIT (and the LLVM it links) is left out.
libs=()
for so in "$libdir"/*.so; do
  case "$(basename "$so")" in llvmjit*) continue ;; esac
  cp "$so" "$rootfs$libdir/"
  libs+=("$so")
done
mkdir -p "$rootfs/usr/share/postgresql"
cp -a "$sharedir" "$rootfs/usr/share/postgresql/"
cp -a /usr/share/zoneinfo "$rootfs/usr/share/zoneinfo"
# Every library they link, plus the dynamic loader, at the same paths as on the host.
for lib in $(ldd "${bins[@]}" "${libs[@]}" | grep -v ':$' | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp "$(readlink -f "$(command -v busybox)")" "$rootfs/bin/busybox"
for applet in sh cat ls echo sleep touch env mkdir rm chmod id; do ln -s busybox "$rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:postgres:/var/lib/postgresql:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\npostgres:x:999:\n' > "$rootfs/etc/group"
# The server's directories belong to its user; everything else to root.
owned=(./var/lib/postgresql ./var/lib/postgresql/data ./var/run/postgresql)
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 --no-recursion \
  -cf "$rootfs.tar" $(cd "$rootfs" && find . | grep -vxF -e "${owned[0]}" -e "${owned[1]}" -e "${owned[2]}")
tar -C "$rootfs" --numeric-owner --owner=999 --group=999 --no-recursion -rf "$rootfs.tar" "${owned[@]}"
trap 'rm -rf "$rootfs" "$rootfs.tar"' EXIT
docker import -c "ENV PATH=$bindir:/bin" -c 'ENV PGDATA=/var/lib/postgresql/data' \
  -c 'ENV TZ=UTC' -c 'USER postgres' -c 'WORKDIR /var/lib/postgresql' \
  "$rootfs.tar" "$IMAGE" >/dev/null
echo "build-postgres-image: built $IMAGE from $bindir ($("$bindir/postgres" --version))" >&2
