#!/usr/bin/env bash
# Git mode, end to end, on this machine: a bare repository stands in for your git host, a
# developer clone pushes manifests to it, and `berth serve` follows it (signed webhook and
# interval). Everything lives in a temp directory; Ctrl-C or the end of the script stops
# berth and removes the example's containers.
#   examples/gitops.sh
# Optional environment (the test suite, reconcile-tests/examples.rs, sets all four):
#   BERTH_BIN=/path/to/berth        use that binary instead of `cargo build --release`
#   BERTH_EXAMPLE_INSTANCE=name     the instance (label paas.instance); default gitops
#   BERTH_EXAMPLE_PORTS="P1 P2"     host ports of demo/hello and demo/world; default "8191 8192"
#   BERTH_EXAMPLE_API_PORT=P        berth's API port; default 7171
set -euo pipefail
# BERTH_BIN may be relative to the directory the script was started in.
[ -z "${BERTH_BIN:-}" ] || BERTH_BIN=$(realpath -m -- "$BERTH_BIN")
cd "$(dirname "$0")/.."
repo=$PWD
. scripts/example-lib.sh

instance=${BERTH_EXAMPLE_INSTANCE:-gitops}
read -r hello_port world_port <<<"${BERTH_EXAMPLE_PORTS:-8191 8192}"
port=${BERTH_EXAMPLE_API_PORT:-7171}
example_check_ports "$hello_port" "$world_port" "$port"

example_berth git:git openssl:openssl
BERTH_TEST_IMAGE=berth-local/busybox:1 scripts/build-test-image.sh >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-gitops.XXXXXX")
root=$work/root
secret=example-webhook-secret
echo "working in $work"

# A manifest of the hello example, published on another host port.
manifest() { # app port
  sed -e "s/^host_port = .*/host_port = $2/" -e "s|127\.0\.0\.1:[0-9]*/|127.0.0.1:$2/|" \
    "$repo/examples/hello/state/apps/demo/$1.toml"
}

# The "git host" and a developer's clone with one app.
git init --quiet --bare -b main "$work/remote.git"
git clone --quiet "$work/remote.git" "$work/dev" 2>/dev/null
cd "$work/dev"
git config user.name "Dev" && git config user.email "dev@example.com"
git checkout --quiet -b main
mkdir -p apps/demo
manifest hello "$hello_port" > apps/demo/hello.toml
git add -A && git commit --quiet -m "hello" && git push --quiet origin main

# A berth root in git mode: state/ will be a clone of the remote. It needs only the
# template; berth makes state/, apps/ and shared/ itself.
mkdir -p "$root"
cp -r "$repo/examples/hello/templates" "$root/"
cat > "$root/berth.toml" <<TOML
instance = "$instance"
listen = "127.0.0.1:$port"
stop_timeout = "2s"

[templates.static-httpd-v1]
image = "berth-local/busybox:1"

[policy]
domains = ["*.example.com"]

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
  example_remove_instance "$instance"
  echo "stopped berth and removed its containers; the files are still in $work (serve.log has the daemon's log)"
}
trap cleanup EXIT

wait_for() { # url
  for _ in $(seq 1 100); do curl -fsS --max-time 2 "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1 (see $work/serve.log)" >&2; return 1
}
wait_for "http://127.0.0.1:$port/healthz" >/dev/null
echo "berth cloned the remote and runs demo/hello:"
wait_for "http://127.0.0.1:$hello_port/"

# Push a second app and tell berth with a signed webhook (what a git host does on push).
manifest world "$world_port" > apps/demo/world.toml
git add -A && git commit --quiet -m "world" && git push --quiet origin main
body='{"ref":"refs/heads/main"}'
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.* //')
curl -fsS -X POST -H "X-Hub-Signature-256: sha256=$sig" -d "$body" "http://127.0.0.1:$port/hooks/git"
echo
echo "after the push and the webhook, demo/world answers too:"
wait_for "http://127.0.0.1:$world_port/"

echo
"$berth" --root "$root" status
echo
echo "revisions of demo/world (source names the commit):"
token=$("$berth" --root "$root" users add admin --admin | tail -n 1)
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/apps/demo/world/revisions"
echo
echo
echo "Next: this script stops berth when it ends; the files stay. Start it again with"
echo "  $berth --root $root serve"
echo "and push from the developer clone: edit or delete a manifest under $work/dev/apps/demo/,"
echo "then 'git -C $work/dev commit -am change && git -C $work/dev push'. berth follows within"
echo "the 30s interval, or at once after a signed webhook as above; 'git -C $root/state log'"
echo "shows what it pulled and every API write."
