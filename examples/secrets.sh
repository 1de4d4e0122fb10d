#!/usr/bin/env bash
# A secret, sealed for one app (docs/guides/secrets.md): this script starts `berth serve` on a
# fresh root (its first start makes the server's key, berth.key), seals a value with
#   berth secrets encrypt API_TOKEN --app demo/shop
# puts the line it prints under the app's [secrets], and shows the app saying the variable is
# set, with the start of its sha256 (the same as the value's), without printing it. The value is in neither the manifest nor
# berth's log. Everything lives in a temp directory; the end of the script stops berth and
# removes the containers.
#   examples/secrets.sh
# Optional environment (the test suite, reconcile-tests/examples.rs, sets all four):
#   BERTH_BIN=/path/to/berth          use that binary instead of `cargo build --release`
#   BERTH_EXAMPLE_INSTANCE=name       the instance (label paas.instance); default secrets
#   BERTH_EXAMPLE_PORTS="PORT"        the app's host port; default 8191
#   BERTH_EXAMPLE_API_PORT=P          berth's API port; default 7173
set -euo pipefail
[ -z "${BERTH_BIN:-}" ] || BERTH_BIN=$(realpath -m -- "$BERTH_BIN")
cd "$(dirname "$0")/.."
. scripts/example-lib.sh

instance=${BERTH_EXAMPLE_INSTANCE:-secrets}
read -r app_port <<<"${BERTH_EXAMPLE_PORTS:-8191}"
port=${BERTH_EXAMPLE_API_PORT:-7173}
example_check_ports "$app_port" "$port"

example_berth
BERTH_TEST_IMAGE=berth-local/busybox:1 scripts/build-test-image.sh >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-secrets.XXXXXX")
root=$work/root
echo "working in $work"
serve=
cleanup() {
  [ -z "$serve" ] || { kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true; }
  example_remove_instance "$instance"
  echo "stopped berth and removed the containers; the files are still in $work"
}
trap cleanup EXIT

# A template whose app tells whether API_TOKEN is set and the start of its sha256, never its value.
mkdir -p "$root/templates/shows-secret" "$root/state/apps/demo"
cat > "$root/templates/shows-secret/template.toml" <<'TOML'
image = "berth-local/busybox:1"
command = ["sh", "-c", "mkdir -p /tmp/w && if [ -n \"$API_TOKEN\" ]; then echo \"API_TOKEN is set, sha256 $(printf %s \"$API_TOKEN\" | sha256sum | cut -c1-12)\"; else echo 'API_TOKEN is not set'; fi > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]
workdir = "/"
port = 8080
TOML
cat > "$root/berth.toml" <<TOML
instance = "$instance"
listen = "127.0.0.1:$port"
stop_timeout = "2s"
TOML
example_serve "$root" "$work/serve.log" "$port"

value="s3cret-$RANDOM$RANDOM"
echo "\$ printf '<the value>' | berth secrets encrypt API_TOKEN --app demo/shop"
line=$(printf '%s' "$value" | "$berth" --root "$root" secrets encrypt API_TOKEN --app demo/shop)
echo "${line:0:40}...\""
manifest=$root/state/apps/demo/shop.toml
printf 'template = "shows-secret"\nhost_port = %s\n\n[secrets]\n%s\n' "$app_port" "$line" > "$manifest"

answers() { curl -fsS --max-time 2 "http://127.0.0.1:$app_port/" | grep -q "API_TOKEN is set"; }
example_wait 60 "demo/shop to answer on 127.0.0.1:$app_port (see $work/serve.log)" answers
echo "demo/shop answers on 127.0.0.1:$app_port:"
curl -fsS --max-time 2 "http://127.0.0.1:$app_port/"
sum=$(printf '%s' "$value" | sha256sum | cut -c1-12)
if curl -fsS --max-time 2 "http://127.0.0.1:$app_port/" | grep -qx "API_TOKEN is set, sha256 $sum"; then
  echo "the same sha256 as the value sealed: the app has the value itself"
else
  echo "the app's API_TOKEN is not the value sealed (sha256 $sum)" >&2; exit 1
fi
for file in "$manifest" "$work/serve.log"; do
  if grep -qF "$value" "$file"; then echo "the plain value is in $file" >&2; exit 1; fi
done
echo "the plain value is in neither $manifest nor berth's log"

echo
echo "Next: the sealed line opens only in demo/shop's manifest; copy it into another app's"
echo "[secrets] and that app is frozen with \"sealed for demo/shop/API_TOKEN\" (berth status)."
echo "Without the private key: berth secrets recipient, then encrypt --recipient age1..."
