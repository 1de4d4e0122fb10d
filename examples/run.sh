#!/usr/bin/env bash
# Runs berth on examples/hello: makes Docker present, builds the example image locally,
# applies the manifests once and shows both apps answering. Re-run it any time: the second
# apply changes nothing. `examples/run.sh clean` removes the example's containers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=examples/hello

scripts/ensure-docker.sh
cargo build --release --locked --quiet
berth=target/release/berth

if [ "${1:-}" = clean ]; then
  docker rm -f $(docker ps -aq --filter label=paas.instance=example) 2>/dev/null || true
  rm -rf "$root/apps" "$root/shared"
  exit 0
fi

BERTH_TEST_IMAGE=berth-local/busybox:1 scripts/build-test-image.sh
"$berth" --root "$root" validate
"$berth" --root "$root" plan
"$berth" --root "$root" apply
for port in 8181 8182; do
  for _ in $(seq 1 50); do
    if out=$(curl -fsS "http://127.0.0.1:$port/"); then echo "127.0.0.1:$port -> $out"; break; fi
    sleep 0.1
  done
done
echo
echo "Now try: edit $root/state/apps/demo/hello.toml and run '$berth --root $root plan',"
echo "or keep it converged with '$berth --root $root serve'."
