#!/usr/bin/env bash
# Builds a node image without a registry: the host's `node` binary, the shared libraries it
# links, npm (its whole package directory, with an `npm` wrapper on PATH; with Debian's node
# or npm, node's global module trees too) and a static busybox for `sh`, loaded with
# `docker import`. Used by the reconcile tests and the node-lite example as the node-lite-v1
# image override; npm lets a container run `npm ci`. HOME=/tmp so npm's cache is writable; no
# update check. No CA bundle is baked in: berth mounts the host's and sets NODE_EXTRA_CA_CERTS
# at run time.
#   scripts/build-node-image.sh [IMAGE]     (default berth-test-node:2); idempotent.
set -euo pipefail
IMAGE="${1:-berth-test-node:2}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
apt_updated=
apt_install() {
  echo "build-node-image: installing $*" >&2
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  apt-get install -y -qq "$@" >/dev/null
}
command -v node >/dev/null 2>&1 || apt_install nodejs
# Nodesource's nodejs bundles npm; Debian's ships it as a package of its own.
command -v npm >/dev/null 2>&1 || apt_install npm
command -v busybox >/dev/null 2>&1 || apt_install busybox-static
node=$(readlink -f "$(command -v node)")
npm_cli=$(readlink -f "$(command -v npm)")     # .../npm/bin/npm-cli.js
npm_dir=$(dirname "$(dirname "$npm_cli")")
if [ "$(basename "$npm_cli")" != npm-cli.js ] || [ ! -f "$npm_dir/package.json" ]; then
  echo "build-node-image: $(command -v npm) does not resolve to an npm package's bin/npm-cli.js" >&2
  exit 1
fi

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
# npm at the same path as on the host. A bundled npm (nodesource: /usr/lib/node_modules/npm)
# carries its dependencies in its own node_modules. Debian's node keeps some of its builtins
# (cjs-module-lexer, undici, acorn) as files under /usr/share/nodejs and aborts at start without
# them, and Debian's npm (/usr/share/nodejs/npm) finds most of its dependencies as sibling
# packages on node's global paths: with either, node's global module trees come along whole
# (with /usr/share/javascript, which some of their files are symlinks into).
mkdir -p "$rootfs$(dirname "$npm_dir")"
cp -a "$npm_dir" "$rootfs$npm_dir"
debian_trees=(/usr/share/nodejs /usr/lib/nodejs "/usr/lib/$(uname -m)-linux-gnu/nodejs" /usr/share/javascript)
if ldd "$node" | grep -q 'libnode\.so' || [[ "$npm_dir" == /usr/share/nodejs/* ]] \
   || [[ "$npm_dir" == /usr/lib/nodejs/* ]]; then
  for tree in "${debian_trees[@]}"; do
    [ -d "$tree" ] || continue
    mkdir -p "$rootfs$tree"
    cp -a "$tree/." "$rootfs$tree/"
  done
fi
printf '#!/bin/sh\nexec /usr/bin/node %s "$@"\n' "$npm_cli" > "$rootfs/usr/bin/npm"
chmod 755 "$rootfs/usr/bin/npm"
cp "$(readlink -f "$(command -v busybox)")" "$rootfs/bin/busybox"
for applet in sh cat ls echo sleep touch wget env; do ln -s busybox "$rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . \
  | docker import -c 'ENV PATH=/usr/bin:/bin' -c 'ENV HOME=/tmp' -c 'ENV npm_config_update_notifier=false' - "$IMAGE" >/dev/null
echo "build-node-image: built $IMAGE from $node ($("$node" --version)) and npm $("$node" "$npm_cli" --version) ($npm_dir)" >&2
