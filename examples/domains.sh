#!/usr/bin/env bash
# Two apps by domain, over HTTPS, through a real Caddy that berth drives (docs/guides/deploys-and-rollback.md): this script
# starts its own Caddy (admin API and listeners on local ports, Caddy's own CA with
# tls = "internal", nothing installed into the system's trust store) and `berth serve`, then
# curls https://shop.example.test and https://blog.example.test through Caddy. Everything
# lives in a temp directory; the end of the script stops both and removes the containers.
#   examples/domains.sh
# Optional environment (the test suite, reconcile-tests/examples.rs, sets all four):
#   BERTH_BIN=/path/to/berth          use that binary instead of `cargo build --release`
#   BERTH_EXAMPLE_INSTANCE=name       the instance (label paas.instance); default domains
#   BERTH_EXAMPLE_PORTS="ADMIN HTTP HTTPS"  Caddy's ports; default "2999 8780 8743"
#   BERTH_EXAMPLE_API_PORT=P          berth's API port; default 7172
set -euo pipefail
[ -z "${BERTH_BIN:-}" ] || BERTH_BIN=$(realpath -m -- "$BERTH_BIN")
cd "$(dirname "$0")/.."
repo=$PWD
. scripts/example-lib.sh

instance=${BERTH_EXAMPLE_INSTANCE:-domains}
read -r admin http https <<<"${BERTH_EXAMPLE_PORTS:-2999 8780 8743}"
port=${BERTH_EXAMPLE_API_PORT:-7172}
example_check_ports "$admin" "$http" "$https" "$port"

example_berth caddy:caddy
BERTH_TEST_IMAGE=berth-local/busybox:1 scripts/build-test-image.sh >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-domains.XXXXXX")
root=$work/root
echo "working in $work"

# Whatever happens from here on, berth and Caddy are stopped and the containers removed.
serve= caddy=
cleanup() {
  [ -z "$serve" ] || { kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true; }
  [ -z "$caddy" ] || { kill "$caddy" 2>/dev/null && wait "$caddy" 2>/dev/null || true; }
  example_remove_instance "$instance"
  echo "stopped berth and Caddy and removed the containers; the files are still in $work"
}
trap cleanup EXIT

# Caddy, on its own: berth only talks to its admin API.
cat > "$work/caddy.json" <<JSON
{"admin": {"listen": "127.0.0.1:$admin"},
 "storage": {"module": "file_system", "root": "$work/caddy-data"},
 "apps": {"pki": {"certificate_authorities": {"local": {"install_trust": false}}}}}
JSON
HOME=$work XDG_DATA_HOME=$work/xdg XDG_CONFIG_HOME=$work/xdg caddy run --config "$work/caddy.json" > "$work/caddy.log" 2>&1 &
caddy=$!

# A berth root: the hello example's template, two apps by domain, [proxy] pointing at Caddy.
mkdir -p "$root/state/apps/demo"
cp -r "$repo/examples/hello/templates" "$root/"
for app in shop blog; do
  printf 'template = "static-httpd-v1"\ndomain = "%s.example.test"\n' "$app" > "$root/state/apps/demo/$app.toml"
done
cat > "$root/berth.toml" <<TOML
instance = "$instance"
listen = "127.0.0.1:$port"
stop_timeout = "2s"

[templates.static-httpd-v1]
image = "berth-local/busybox:1"

[policy]
domains = ["*.example.test"]

[proxy]
caddy_admin = "http://127.0.0.1:$admin"
http_port = $http
https_port = $https
tls = "internal"
TOML
"$berth" --root "$root" serve > "$work/serve.log" 2>&1 &
serve=$!

ca=$work/caddy-data/pki/authorities/local/root.crt
get() { # domain
  curl -fsS --max-time 2 --resolve "$1:$https:127.0.0.1" --cacert "$ca" "https://$1:$https/"
}
wait_for() { # domain
  for _ in $(seq 1 150); do get "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "no answer from https://$1:$https/ (see $work/serve.log and $work/caddy.log)" >&2
  return 1
}
for app in shop blog; do
  echo "https://$app.example.test:$https/ answers through Caddy:"
  wait_for "$app.example.test"
done

echo
echo "Next: while berth and Caddy run (this script stops them when it ends), edit"
echo "$root/state/apps/demo/*.toml: set state = \"stopped\" and the domain answers 503;"
echo "give an app another domain under example.test and it moves. berth's routes are in"
echo "  curl -s 127.0.0.1:$admin/config/apps/http/servers/berth-$instance"
echo "and curl needs --resolve NAME:$https:127.0.0.1 --cacert $ca to reach them."
