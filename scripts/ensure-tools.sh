#!/usr/bin/env bash
# Installs the host tools berth's tests, example and shipped templates use, when missing:
# (Nothing here is for berth itself: it needs Docker, and git for git mode. The test images'
# builders install what they copy into images.) curl,
# git (git mode keeps state/ as a clone), openssl (signing the example's webhook; the swarm tests'
# registry CA), restic (app backups: scripts/build-restic-image.sh copies it into the image
# berth runs it from), faketime
# (libfaketime: a test steps berth's wall clock back mid-run), caddy (the proxy tests run a
# real Caddy per test; Debian's package starts no service here), promtool (from Debian's
# prometheus package: a test checks /metrics with it), lintian and systemd-analyze (the .deb
# and its unit are checked), chromium and chromedriver (the portal's browser tests drive
# real headless Chromium over WebDriver), wrk (the benchmarks' load generator), docker-compose (benches/compose.rs times it beside berth),
# docker-registry (the swarm tests push app images to one of their own), apache2-utils
# (`htpasswd`: the two-node test's registry asks for a login), iproute2 (`ip` and
# `ss`: scripts/swarm-node.sh makes the second node's network namespace and veth pair).
set -euo pipefail
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v git >/dev/null 2>&1 || need+=(git)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v caddy >/dev/null 2>&1 || need+=(caddy)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v restic >/dev/null 2>&1 || need+=(restic)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
{ command -v ip && command -v ss; } >/dev/null 2>&1 || need+=(iproute2)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  echo "ensure-tools: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
