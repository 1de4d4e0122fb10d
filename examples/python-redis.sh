#!/usr/bin/env bash
# A Python app with a Redis (docs/guides/templates-and-values.md): this script starts
# `berth serve` on a fresh root with the shipped python-lite-v1 and redis-v1 templates, then,
# through the HTTP API as alice:
#   1. creates alice/cache from redis-v1: berth generates its password and seals it into the
#      manifest's [values];
#   2. writes alice/web (python-lite-v1, examples/python-redis/app.py as its code, stopped) and
#      asks the server to copy the Redis password into web's [secrets] (`copy_from`: a sealed
#      value opens only in the app it was sealed for);
#   3. starts web, which reaches the Redis by its app name, `cache`, on alice's own network
#      and counts its visits there.
# The images are built from this machine's Debian python3 and redis (no registry); pip installs
# python-lite-v1's requirements from PyPI in a container. Everything lives in a temp directory;
# the end of the script stops berth and removes the containers and the Redis volume.
#   examples/python-redis.sh
# Optional environment (the test suite, reconcile-tests/examples.rs, sets all four):
#   BERTH_BIN=/path/to/berth          use that binary instead of `cargo build --release`
#   BERTH_EXAMPLE_INSTANCE=name       the instance (label paas.instance); default pyredis
#   BERTH_EXAMPLE_PORTS="PORT"        web's host port; default 8192
#   BERTH_EXAMPLE_API_PORT=P          berth's API port; default 7176
set -euo pipefail
[ -z "${BERTH_BIN:-}" ] || BERTH_BIN=$(realpath -m -- "$BERTH_BIN")
cd "$(dirname "$0")/.."
repo=$PWD
. scripts/example-lib.sh

instance=${BERTH_EXAMPLE_INSTANCE:-pyredis}
read -r web_port <<<"${BERTH_EXAMPLE_PORTS:-8192}"
port=${BERTH_EXAMPLE_API_PORT:-7176}
example_check_ports "$web_port" "$port"

example_berth
scripts/build-python-image.sh berth-local/python:1
scripts/build-redis-image.sh berth-local/redis:1

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-pyredis.XXXXXX")
root=$work/root
echo "working in $work"
serve=
cleanup() {
  [ -z "$serve" ] || { kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true; }
  example_remove_instance "$instance"
  docker volume rm "berth-$instance-alice-cache.data" >/dev/null 2>&1 || true
  echo "stopped berth and removed the containers; the files are still in $work"
}
trap cleanup EXIT

mkdir -p "$root/templates" "$root/state/apps/alice"
cp -r "$repo/templates/python-lite-v1" "$repo/templates/redis-v1" "$root/templates/"
cat > "$root/berth.toml" <<TOML
instance = "$instance"
listen = "127.0.0.1:$port"
stop_timeout = "2s"

# Built locally by this script: no registry needed.
[templates.python-lite-v1]
image = "berth-local/python:1"

[templates.redis-v1]
image = "berth-local/redis:1"
TOML
example_serve "$root" "$work/serve.log" "$port"
API=http://127.0.0.1:$port
TOKEN=$("$berth" --root "$root" users add alice | tail -n 1)
AUTH="Authorization: Bearer $TOKEN"

echo "1. a Redis for alice, with a password berth generates and seals:"
curl -fsS -o /dev/null -H "$AUTH" -H 'Content-Type: application/json' \
  -d '{"appname":"cache","templateId":"redis-v1","values":{"version":"7"}}' "$API/apps"
grep '^password = ' "$root/state/apps/alice/cache.toml" | cut -c1-40 | sed 's/$/..."/'

echo "2. alice/web, stopped until it has the password; its code is examples/python-redis/app.py"
# The workspace exists before the first create, so python-lite-v1's pre-create keeps it.
mkdir -p "$root/apps/alice/web"
cp "$repo/examples/python-redis/app.py" "$root/apps/alice/web/app.py"
cat > "$root/state/apps/alice/web.toml" <<TOML
template = "python-lite-v1"
host_port = $web_port
state = "stopped"

[env]
REDIS_HOST = "cache"   # the Redis app's name: alice's apps reach each other by name
TOML
# The watcher takes the file up; the API knows the app once it has.
known() { curl -fsS -o /dev/null -H "$AUTH" "$API/apps/alice/web"; }
example_wait 30 "alice/web to be known to the API" known
curl -fsS -X PUT -H "$AUTH" -H 'Content-Type: application/json' \
  -d '{"copy_from":"alice/cache/values.password"}' "$API/apps/alice/web/secrets/REDIS_PASSWORD"
echo

echo "3. start web; pip installs python-lite-v1's requirements once, in a container"
curl -fsS -X POST -H "$AUTH" "$API/apps/alice/web/start" >/dev/null
counts() { curl -fsS --max-time 3 "http://127.0.0.1:$web_port/" | grep -q "counted by redis at cache"; }
example_wait 150 "alice/web to count visits in alice/cache (see $work/serve.log)" counts
echo "http://127.0.0.1:$web_port/ answers:"
curl -fsS --max-time 3 "http://127.0.0.1:$web_port/"
curl -fsS --max-time 3 "http://127.0.0.1:$web_port/"

echo
echo "Next: on a root of your own, the same calls; then edit apps/alice/web/app.py and deploy"
echo "(POST /apps/alice/web/deploy): the count lives on in cache's volume, data."
