#!/usr/bin/env bash
# The one test command (README, .ci/run): makes a Docker engine present, builds the local test
# images (busybox, node, python, redis, postgres, restic), then builds berth and runs every test — unit tests
# and the reconcile tests against the real engine.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "test.sh: cargo is required (rustup)" >&2; exit 1; }
scripts/ensure-docker.sh
scripts/ensure-tools.sh
scripts/build-test-image.sh
scripts/build-node-image.sh
scripts/build-python-image.sh
scripts/build-redis-image.sh
scripts/build-postgres-image.sh
scripts/build-restic-image.sh
# Docker-bound tests wait on the engine, not the CPU: more threads than cores keeps 2 cores busy.
cargo test --locked -- --test-threads="${BERTH_TEST_THREADS:-4}"
# The swarm tests make this engine a swarm manager and leave again: that changes networking for
# every container on the engine, so they run alone, one at a time, after everything else.
cargo test --locked --test reconcile -- --ignored --test-threads=1
