#!/usr/bin/env bash
# Runs berth on an example root under examples/: makes Docker present, makes the example's
# image locally when no registry has it, applies the manifests once and shows the apps
# answering. Re-run it any time: the second apply changes nothing.
#   examples/run.sh [node-lite|hello]      (default node-lite)
#   examples/run.sh clean [node-lite|hello] removes the example's containers and runtime dirs
set -euo pipefail
cd "$(dirname "$0")/.."

action=run
if [ "${1:-}" = clean ]; then action=clean; shift; fi
name="${1:-node-lite}"
root="examples/$name"
[ -f "$root/berth.toml" ] || { echo "no example $root" >&2; exit 2; }
instance=$(sed -n 's/^instance = "\(.*\)"/\1/p' "$root/berth.toml")

scripts/ensure-docker.sh
scripts/ensure-tools.sh
cargo build --release --locked --quiet
berth=target/release/berth

if [ "$action" = clean ]; then
  ids=$(docker ps -aq --filter "label=paas.instance=$instance")
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  rm -rf "$root/apps" "$root/shared"
  echo "cleaned $root"
  exit 0
fi

case "$name" in
  node-lite)
    if ! docker image inspect berth-local/node:22 >/dev/null 2>&1; then
      if timeout 60 docker pull -q node:22-alpine >/dev/null 2>&1; then
        docker tag node:22-alpine berth-local/node:22
      else
        echo "node:22-alpine cannot be pulled here; building berth-local/node:22 from this machine's node" >&2
        scripts/build-node-image.sh berth-local/node:22
      fi
    fi ;;
  hello) BERTH_TEST_IMAGE=berth-local/busybox:1 scripts/build-test-image.sh ;;
esac

"$berth" --root "$root" validate
"$berth" --root "$root" apply
for port in $(sed -n 's/^host_port = \([0-9]*\)/\1/p' "$root"/state/apps/*/*.toml); do
  for _ in $(seq 1 50); do
    if out=$(curl -fsS "http://127.0.0.1:$port/" 2>/dev/null); then echo "127.0.0.1:$port -> $out"; break; fi
    sleep 0.1
  done
done
echo
echo "Next: edit $root/state/apps/demo/*.toml and run '$berth --root $root plan' to see the diff,"
echo "'$berth --root $root apply' to converge, or '$berth --root $root serve' to keep converging."
