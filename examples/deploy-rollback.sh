#!/usr/bin/env bash
# A domain deploy and a rollback through Caddy (docs/guides/deploys-and-rollback.md): this
# script starts its own Caddy (admin API and listeners on local ports, Caddy's own CA) and
# `berth serve`, serves demo/shop at https://shop.example.test, and keeps requesting it while
#   1. a new version (v2) is deployed start-first: Caddy switches once v2 is healthy;
#   2. a broken version (v3, which exits at start) is refused by the health gate: its container
#      is removed, v2 keeps serving, and the app shows rollout-failed;
#   3. `POST /apps/demo/shop/rollback` writes v2's manifest back, and the app is running again.
# At the end it counts the answers: every request was answered, by v1 or v2, never by v3.
# Everything lives in a temp directory; the end of the script stops both and removes the
# containers.
#   examples/deploy-rollback.sh
# Optional environment (the test suite, reconcile-tests/examples.rs, sets all four):
#   BERTH_BIN=/path/to/berth          use that binary instead of `cargo build --release`
#   BERTH_EXAMPLE_INSTANCE=name       the instance (label paas.instance); default rollback
#   BERTH_EXAMPLE_PORTS="ADMIN HTTP HTTPS"  Caddy's ports; default "2998 8781 8744"
#   BERTH_EXAMPLE_API_PORT=P          berth's API port; default 7174
set -euo pipefail
[ -z "${BERTH_BIN:-}" ] || BERTH_BIN=$(realpath -m -- "$BERTH_BIN")
cd "$(dirname "$0")/.."
. scripts/example-lib.sh

instance=${BERTH_EXAMPLE_INSTANCE:-rollback}
read -r admin http https <<<"${BERTH_EXAMPLE_PORTS:-2998 8781 8744}"
port=${BERTH_EXAMPLE_API_PORT:-7174}
example_check_ports "$admin" "$http" "$https" "$port"

example_berth caddy:caddy
BERTH_TEST_IMAGE=berth-local/busybox:1 scripts/build-test-image.sh >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-rollback.XXXXXX")
root=$work/root
echo "working in $work"
serve= caddy= load=
cleanup() {
  [ -z "$load" ] || { kill "$load" 2>/dev/null && wait "$load" 2>/dev/null || true; }
  [ -z "$serve" ] || { kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true; }
  [ -z "$caddy" ] || { kill "$caddy" 2>/dev/null && wait "$caddy" 2>/dev/null || true; }
  example_remove_instance "$instance"
  echo "stopped berth and Caddy and removed the containers; the files are still in $work"
}
trap cleanup EXIT

cat > "$work/caddy.json" <<JSON
{"admin": {"listen": "127.0.0.1:$admin"},
 "storage": {"module": "file_system", "root": "$work/caddy-data"},
 "apps": {"pki": {"certificate_authorities": {"local": {"install_trust": false}}}}}
JSON
HOME=$work XDG_DATA_HOME=$work/xdg XDG_CONFIG_HOME=$work/xdg caddy run --config "$work/caddy.json" > "$work/caddy.log" 2>&1 &
caddy=$!

# A template that answers $GREETING, and exits at start when $CRASH is set (the broken version).
mkdir -p "$root/templates/greeter" "$root/state/apps/demo"
cat > "$root/templates/greeter/template.toml" <<'TOML'
image = "berth-local/busybox:1"
command = ["sh", "-c", "if [ -n \"$CRASH\" ]; then echo 'v3 crashes at start' >&2; exit 1; fi; mkdir -p /tmp/w && echo \"$GREETING\" > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]
workdir = "/"
port = 8080

[health]
path = "/"
timeout = "10s"
interval = "200ms"
TOML
cat > "$root/berth.toml" <<TOML
instance = "$instance"
listen = "127.0.0.1:$port"
stop_timeout = "2s"

[policy]
domains = ["*.example.test"]

[proxy]
caddy_admin = "http://127.0.0.1:$admin"
http_port = $http
https_port = $https
tls = "internal"
drain = "1s"
TOML
manifest=$root/state/apps/demo/shop.toml
version() { # GREETING [extra line]
  printf 'template = "greeter"\ndomain = "shop.example.test"\n\n[env]\nGREETING = "%s"\n%s' "$1" "${2:-}" > "$manifest"
}
version "v1"
example_serve "$root" "$work/serve.log" "$port"
TOKEN=$("$berth" --root "$root" users add demo | tail -n 1)
AUTH="Authorization: Bearer $TOKEN"
API=http://127.0.0.1:$port

ca=$work/caddy-data/pki/authorities/local/root.crt
get() { curl -sS --max-time 5 --resolve "shop.example.test:$https:127.0.0.1" --cacert "$ca" "https://shop.example.test:$https/"; }
answers() { get | grep -qx "$1"; }
phase() { curl -fsS -H "$AUTH" "$API/apps/demo/shop" | grep -q "\"phase\":\"$1\""; }
example_wait 60 "v1 at https://shop.example.test:$https/ (see $work/serve.log, $work/caddy.log)" answers v1
echo "https://shop.example.test:$https/ answers through Caddy: $(get)"

# One request after another for the rest of the script, each answer on a line of its own. A
# request reset while Caddy swaps its listener is sent once more, as a browser would
# (docs/guides/troubleshooting.md), and counted.
requests() {
  while true; do
    if ! body=$(get 2>&1); then
      echo "resent" >> "$work/resent"
      body=$(get 2>&1) || body="FAILED: $body"
    fi
    echo "$body" >> "$work/answers"
  done
}
requests &
load=$!

echo "deploying v2 (start-first: Caddy switches once it is healthy)"
version "v2"
example_wait 60 "v2 to answer" answers v2
echo "https://shop.example.test:$https/ answers: $(get)"

echo "deploying v3, which exits at start"
version "v2" 'CRASH = "1"'
example_wait 60 "demo/shop to show rollout-failed" phase rollout-failed
echo "v3 was refused by the health gate; berth status says:"
"$berth" --root "$root" status | grep demo/shop
echo "https://shop.example.test:$https/ still answers: $(get)"

# The revisions: the newest is v3's; the one before it is v2's.
revisions=$(curl -fsS -H "$AUTH" "$API/apps/demo/shop/revisions")
v2=$(grep -o '"revision":[0-9]*' <<<"$revisions" | cut -d: -f2 | sort -n | tail -n 2 | head -n 1)
echo "rolling back to revision $v2 (v2's manifest)"
curl -fsS -H "$AUTH" -H 'Content-Type: application/json' -d "{\"revision\": $v2}" "$API/apps/demo/shop/rollback" >/dev/null
example_wait 60 "demo/shop to be running again" phase running
grep -q CRASH "$manifest" && { echo "the rollback left v3's manifest" >&2; exit 1; }
echo "demo/shop is running v2 again: $(get)"

kill "$load"; wait "$load" 2>/dev/null || true; load=
total=$(wc -l < "$work/answers")
bad=$(grep -cvx 'v[12]' "$work/answers" || true)
resent=0
[ ! -f "$work/resent" ] || resent=$(wc -l < "$work/resent")
echo "$total requests during the deploys: $bad not answered by v1 or v2 ($resent sent again after a reset)"
[ "$bad" -eq 0 ] || { grep -vx 'v[12]' "$work/answers" | sort | uniq -c >&2; exit 1; }

echo
echo "Next: the revisions are in GET $API/apps/demo/shop/revisions (and the portal's"
echo "Revisions tab); berth_rollouts_total{result=\"rolled_back\"} is in $API/metrics."
