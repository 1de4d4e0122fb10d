# Shared by the scripts under examples/ (sourced, not run), from the repository's root.

# Installs Debian's package for each `command:package` pair whose command is missing: an
# example installs what it uses itself, never the test suite's tools.
example_need() {
  local pair need=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  echo "example: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

# Makes Docker present (and the tools named as `command:package`, see example_need), then sets
# $berth: $BERTH_BIN when given (the test suite passes the binary it built), else a build of
# this checkout with the quick profile (Cargo.toml).
example_berth() {
  scripts/ensure-docker.sh
  example_need curl:curl "$@"
  if [ -n "${BERTH_BIN:-}" ]; then
    berth=$BERTH_BIN
    [ -x "$berth" ] || { echo "BERTH_BIN=$berth is not an executable" >&2; exit 2; }
  else
    # The quick profile: a third of a release build's CPU time; an example needs no speed.
    cargo build --profile quick --locked --quiet
    berth=$PWD/target/quick/berth
  fi
}

# Exits 2 unless every argument is a port number.
example_check_ports() {
  for p in "$@"; do
    case "$p" in '' | *[!0-9]*) echo "not a port: '$p'" >&2; exit 2 ;; esac
  done
}

# Removes every container and network labelled with berth instance $1, and nothing else.
example_remove_instance() {
  local ids nets
  ids=$(docker ps -aq --filter "label=paas.instance=$1")
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  nets=$(docker network ls -q --filter "label=paas.instance=$1")
  [ -z "$nets" ] || docker network rm $nets >/dev/null
}

# Retries `"$@"` (quietly) every 0.2 s for up to $1 seconds after the first argument, the
# description: example_wait SECONDS "what" command... Prints the command's last output on success.
example_wait() {
  local seconds=$1 what=$2 i
  shift 2
  for ((i = 0; i < seconds * 5; i++)); do
    if "$@" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "gave up after ${seconds}s waiting for $what" >&2
  return 1
}

# Starts `$berth --root $1 serve` in the background, logging to $2 ($serve is its pid), and
# waits until its API on 127.0.0.1:$3 answers /readyz (the engine, the database and the watcher
# are up). The caller's EXIT trap stops it.
example_serve() {
  "$berth" --root "$1" serve > "$2" 2>&1 &
  serve=$!
  example_wait 30 "berth serve to be ready (see $2)" curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$3/readyz"
}
