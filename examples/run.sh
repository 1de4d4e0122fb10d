#!/usr/bin/env bash
# Runs berth on an example root under examples/: makes Docker present, makes the example's
# image locally when no registry has it, applies the manifests once and shows the apps
# answering (it fails when one does not). Re-run it any time: the second apply changes nothing.
#   examples/run.sh [node-lite|hello]      (default node-lite)
#   examples/run.sh clean [node-lite|hello] removes the example's containers and runtime dirs
# Optional environment (the test suite, reconcile-tests/examples.rs, sets all three):
#   BERTH_BIN=/path/to/berth      use that binary instead of `cargo build --profile quick`
#   BERTH_EXAMPLE_INSTANCE=name   run as this instance (label paas.instance) instead of the
#                                 one in the example's berth.toml
#   BERTH_EXAMPLE_PORTS="P1 P2"   publish the apps on these host ports instead of the
#                                 manifests' own (one per manifest, in file name order)
# The two overrides are written into the example's berth.toml and manifests, so a later
# plan, apply, serve or clean sees the same values (`git diff examples/` shows them).
set -euo pipefail
# BERTH_BIN may be relative to the directory the script was started in.
[ -z "${BERTH_BIN:-}" ] || BERTH_BIN=$(realpath -m -- "$BERTH_BIN")
cd "$(dirname "$0")/.."
. scripts/example-lib.sh

action=run
if [ "${1:-}" = clean ]; then action=clean; shift; fi
name="${1:-node-lite}"
root="examples/$name"
[ -f "$root/berth.toml" ] || { echo "no example $root" >&2; exit 2; }
manifests=("$root"/state/apps/*/*.toml)

if [ -n "${BERTH_EXAMPLE_INSTANCE:-}" ]; then
  sed -i "s/^instance = .*/instance = \"$BERTH_EXAMPLE_INSTANCE\"/" "$root/berth.toml"
fi
if [ -n "${BERTH_EXAMPLE_PORTS:-}" ]; then
  read -r -a ports <<<"$BERTH_EXAMPLE_PORTS"
  if [ ${#ports[@]} -ne ${#manifests[@]} ]; then
    echo "BERTH_EXAMPLE_PORTS needs ${#manifests[@]} ports, one for each of ${manifests[*]}" >&2
    exit 2
  fi
  for i in "${!manifests[@]}"; do
    example_check_ports "${ports[$i]}"
    sed -i -e "s/^host_port = .*/host_port = ${ports[$i]}/" \
      -e "s|127\.0\.0\.1:[0-9]*/|127.0.0.1:${ports[$i]}/|" "${manifests[$i]}"
  done
fi
instance=$(sed -n 's/^instance = "\(.*\)"/\1/p' "$root/berth.toml")

example_berth

if [ "$action" = clean ]; then
  example_remove_instance "$instance"
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
failed=0
for port in $(sed -n 's/^host_port = \([0-9]*\)/\1/p' "${manifests[@]}"); do
  answered=no
  for _ in $(seq 1 100); do
    if out=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null); then
      echo "127.0.0.1:$port -> $out"
      answered=yes
      break
    fi
    sleep 0.1
  done
  if [ "$answered" = no ]; then
    echo "127.0.0.1:$port does not answer; see '$berth --root $root status'" >&2
    failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
echo
echo "Next: edit $root/state/apps/demo/*.toml and run '$berth --root $root plan' to see the diff,"
echo "'$berth --root $root apply' to converge, or '$berth --root $root serve' to keep converging."
echo "'examples/run.sh clean $name' removes the containers (instance $instance) again."
