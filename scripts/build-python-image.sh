#!/usr/bin/env bash
# Builds a python image without a registry: Debian's python3 (/usr/bin/python3, not a pyenv or
# other one earlier on PATH), its standard library, the shared libraries the binary and the
# stdlib's extension modules link, Debian's pip (self-contained: its dependencies are vendored)
# and a static busybox for `sh`, loaded with `docker import`. `python3` and `python` are on
# PATH; HOME=/tmp. No CA bundle is baked in: Debian's pip reads /etc/ssl/certs/ca-certificates.crt,
# which berth mounts from the host at run time. Install packages with `pip install --target DIR`
# (Debian marks the system python externally managed).
#   scripts/build-python-image.sh [IMAGE]     (default berth-test-python:1); idempotent.
set -euo pipefail
IMAGE="${1:-berth-test-python:1}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
apt_updated=
apt_install() {
  echo "build-python-image: installing $*" >&2
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  apt-get install -y -qq "$@" >/dev/null
}
[ -x /usr/bin/python3 ] || apt_install python3
/usr/bin/python3 -c 'import pip' >/dev/null 2>&1 || apt_install python3-pip
command -v busybox >/dev/null 2>&1 || apt_install busybox-static
python=$(readlink -f /usr/bin/python3)                       # /usr/bin/python3.11
pyver=$(basename "$python")                                  # python3.11
stdlib=/usr/lib/$pyver
pip_pkg=$(/usr/bin/python3 -c 'import os, pip; print(os.path.dirname(pip.__file__))')
[ -d "$stdlib/lib-dynload" ] || { echo "build-python-image: no $stdlib/lib-dynload" >&2; exit 1; }

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/usr/bin" "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/usr/lib"
chmod 1777 "$rootfs/tmp"
cp "$python" "$rootfs/usr/bin/$pyver"
ln -s "$pyver" "$rootfs/usr/bin/python3"
ln -s "$pyver" "$rootfs/usr/bin/python"
# The stdlib at its host path (python finds it from its own location), less static libraries
# and the test suite; Debian's sitecustomize symlink points into /etc/pythonX.Y.
tar -C /usr/lib --exclude='*.a' --exclude="$pyver/test" -cf - "$pyver" | tar -C "$rootfs/usr/lib" -xf -
[ -d "/etc/$pyver" ] && cp -a "/etc/$pyver" "$rootfs/etc/"
# pip and its metadata, at their host path (Debian: /usr/lib/python3/dist-packages).
site=$(dirname "$pip_pkg")
mkdir -p "$rootfs$site"
cp -a "$pip_pkg" "$rootfs$site/"
for meta in "$site"/pip-*.dist-info; do [ -d "$meta" ] && cp -a "$meta" "$rootfs$site/"; done
# Every library the interpreter and its extension modules link, plus the dynamic loader.
for lib in $(ldd "$python" "$stdlib"/lib-dynload/*.so 2>/dev/null | grep -v ':$' | grep -o '/[^ ]*' \
             | grep -v "^$stdlib/" | sort -u); do
  [ -e "$rootfs$lib" ] && continue
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp "$(readlink -f "$(command -v busybox)")" "$rootfs/bin/busybox"
for applet in sh cat ls echo sleep touch wget env mkdir rm; do ln -s busybox "$rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . \
  | docker import -c 'ENV PATH=/usr/bin:/bin' -c 'ENV HOME=/tmp' -c 'ENV LANG=C.UTF-8' -c 'ENV PIP_ROOT_USER_ACTION=ignore' - "$IMAGE" >/dev/null
echo "build-python-image: built $IMAGE from $python ($("$python" --version)) and pip $(/usr/bin/python3 -m pip --version | cut -d' ' -f2) ($pip_pkg)" >&2
