# Shared by the scripts under examples/ (sourced, not run), from the repository's root.

# Makes Docker and the tools present, then sets $berth: $BERTH_BIN when given (the test suite
# passes the binary it built), else a release build of this checkout.
example_berth() {
  scripts/ensure-docker.sh
  scripts/ensure-tools.sh
  if [ -n "${BERTH_BIN:-}" ]; then
    berth=$BERTH_BIN
    [ -x "$berth" ] || { echo "BERTH_BIN=$berth is not an executable" >&2; exit 2; }
  else
    cargo build --release --locked --quiet
    berth=$PWD/target/release/berth
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
