#!/usr/bin/env bash
# The portal (docs/guides/portal.md), driven with curl the way a browser would: this script
# starts `berth serve` on a fresh root, adds the user alice, signs in at /ui/login with her
# token (the session is a cookie), reads the CSRF token from the apps page and posts the
# "Create" form for an app named hello, then waits until the apps page shows hello running.
# Everything lives in a temp directory; the end of the script stops berth and removes the
# containers.
#   examples/portal.sh
# Optional environment (the test suite, reconcile-tests/examples.rs, sets all three):
#   BERTH_BIN=/path/to/berth          use that binary instead of `cargo build --release`
#   BERTH_EXAMPLE_INSTANCE=name       the instance (label paas.instance); default portal
#   BERTH_EXAMPLE_API_PORT=P          berth's API and portal port; default 7175
set -euo pipefail
[ -z "${BERTH_BIN:-}" ] || BERTH_BIN=$(realpath -m -- "$BERTH_BIN")
cd "$(dirname "$0")/.."
repo=$PWD
. scripts/example-lib.sh

instance=${BERTH_EXAMPLE_INSTANCE:-portal}
port=${BERTH_EXAMPLE_API_PORT:-7175}
example_check_ports "$port"

example_berth
BERTH_TEST_IMAGE=berth-local/busybox:1 scripts/build-test-image.sh >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-portal.XXXXXX")
root=$work/root
echo "working in $work"
serve=
cleanup() {
  [ -z "$serve" ] || { kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true; }
  example_remove_instance "$instance"
  echo "stopped berth and removed the containers; the files are still in $work"
}
trap cleanup EXIT

# A berth root with the hello example's template (a busybox httpd) and no apps yet.
mkdir -p "$root/state/apps"
cp -r "$repo/examples/hello/templates" "$root/"
cat > "$root/berth.toml" <<TOML
instance = "$instance"
listen = "127.0.0.1:$port"
stop_timeout = "2s"

[templates.static-httpd-v1]
image = "berth-local/busybox:1"
TOML
example_serve "$root" "$work/serve.log" "$port"
ui=http://127.0.0.1:$port/ui
TOKEN=$("$berth" --root "$root" users add alice | tail -n 1)

# A browser: cookies kept in a jar, redirects followed.
browser() { curl -fsS --max-time 5 -b "$work/cookies" -c "$work/cookies" "$@"; }
echo "signing in at $ui/login as alice"
browser -o /dev/null --data-urlencode "token=$TOKEN" "$ui/login"
page=$(browser "$ui/apps")
grep -q 'action="/ui/logout"' <<<"$page" || { echo "not signed in: $page" >&2; exit 1; }
# Every form carries the session's CSRF token; a POST without it is refused.
csrf=$(grep -o 'name="csrf" value="[^"]*"' <<<"$page" | head -n 1 | cut -d'"' -f4)
echo "creating alice/hello from static-httpd-v1 with the form on $ui/apps"
browser -o /dev/null --data-urlencode "csrf=$csrf" -d appname=hello -d template=static-httpd-v1 "$ui/apps"

running() { browser "$ui/apps" | grep -A6 '/ui/apps/alice/hello' | grep -q 'class="phase running"'; }
example_wait 60 "the apps page to show alice/hello running (see $work/serve.log)" running
echo "the apps page shows alice/hello running; its manifest, as the portal wrote it:"
cat "$root/state/apps/alice/hello.toml"

echo
echo "Next: run berth serve on a root of your own, open /ui on its listen address in a"
echo "browser and sign in with the token berth users add NAME prints (docs/guides/portal.md)."
