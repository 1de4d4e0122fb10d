#!/usr/bin/env bash
# Git mode, end to end, on this machine: a bare repository stands in for your git host, a
# developer clone pushes manifests to it, and `berth serve` follows it (signed webhook and
# interval). Everything lives in a temp directory; Ctrl-C or the end of the script stops
# berth and removes the example's containers.
#   examples/gitops.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

scripts/ensure-docker.sh
scripts/ensure-tools.sh
cargo build --release --locked --quiet
BERTH_TEST_IMAGE=berth-local/busybox:1 scripts/build-test-image.sh >/dev/null
berth=$repo/target/release/berth

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-gitops.XXXXXX")
root=$work/root
secret=example-webhook-secret
port=7171
echo "working in $work"

# The "git host" and a developer's clone with two apps.
git init --quiet --bare -b main "$work/remote.git"
git clone --quiet "$work/remote.git" "$work/dev" 2>/dev/null
cd "$work/dev"
git config user.name "Dev" && git config user.email "dev@example.com"
git checkout --quiet -b main
mkdir -p apps/demo
sed 's/8181/8191/' "$repo/examples/hello/state/apps/demo/hello.toml" > apps/demo/hello.toml
git add -A && git commit --quiet -m "hello" && git push --quiet origin main

# A berth root in git mode: state/ will be a clone of the remote.
mkdir -p "$root"
cp -r "$repo/examples/hello/templates" "$repo/examples/hello/apps" "$root/"
cat > "$root/berth.toml" <<TOML
instance = "gitops"
listen = "127.0.0.1:$port"
stop_timeout = "2s"

[templates.static-httpd-v1]
image = "berth-local/busybox:1"

[git]
remote = "$work/remote.git"
branch = "main"
interval = "30s"
webhook_secret = "$secret"
TOML
"$berth" --root "$root" serve > "$work/serve.log" 2>&1 &
serve=$!
cleanup() {
  kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true
  ids=$(docker ps -aq --filter label=paas.instance=gitops)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  echo "stopped berth; the files are still in $work (serve.log has the daemon's log)"
}
trap cleanup EXIT

wait_for() { # url
  for _ in $(seq 1 100); do curl -fsS "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}
wait_for "http://127.0.0.1:$port/healthz" >/dev/null
echo "berth cloned the remote and runs demo/hello:"
wait_for http://127.0.0.1:8191/

# Push a second app and tell berth with a signed webhook (what a git host does on push).
sed 's/8182/8192/' "$repo/examples/hello/state/apps/demo/world.toml" > apps/demo/world.toml
git add -A && git commit --quiet -m "world" && git push --quiet origin main
body='{"ref":"refs/heads/main"}'
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.* //')
curl -fsS -X POST -H "X-Hub-Signature-256: sha256=$sig" -d "$body" "http://127.0.0.1:$port/hooks/git"
echo
echo "after the push and the webhook, demo/world answers too:"
wait_for http://127.0.0.1:8192/

echo
"$berth" --root "$root" status
echo
echo "revisions of demo/world (source names the commit):"
token=$("$berth" --root "$root" users add admin --admin | tail -n 1)
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/apps/demo/world/revisions"
echo
