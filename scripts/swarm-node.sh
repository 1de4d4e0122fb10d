#!/usr/bin/env bash
# A second Docker engine on this machine, to be a Swarm node in tests, and a registry both
# engines pull from.
#
#   swarm-node.sh up NAME [INDEX]       start engine NAME in network namespace berth-NAME
#   swarm-node.sh down NAME             stop it and remove everything `up` made (idempotent)
#   swarm-node.sh registry-up PORT DIR [ADDR...]   start Debian's docker-registry (TLS)
#   swarm-node.sh registry-down PORT    stop it and untrust its certificate (idempotent)
#
# `up` makes netns berth-NAME, a veth pair (host side bth-NAME = 10.213.X.1/30, namespace side
# eth0 = 10.213.X.2/30; X from INDEX, or from a hash of NAME), and runs dockerd in it with its
# own data root (/var/lib/berth-NAME), exec root, pidfile and socket (/run/berth-NAME/), no
# default bridge (BERTH_NODE_BRIDGE=1: one on 10.214.X.1/24, which a host-mode port of a task
# on no network needs), its own containerd namespaces, cgroup parent /berth-NAME and hostname
# berth-NAME. dockerd is started with `nsenter --net` only: `ip netns exec` would give it a
# fresh mount namespace that hides the cgroup mounts, and it would stop. It prints
#   DOCKER_HOST=unix:///run/berth-NAME/docker.sock
#   NODE_ADDR=10.213.X.2
#   HOST_ADDR=10.213.X.1
# (eval-able). The host's engine reaches the node at NODE_ADDR and the node the host at
# HOST_ADDR, so `docker swarm init --advertise-addr HOST_ADDR` on the host engine and
# `swarm join --advertise-addr NODE_ADDR ... HOST_ADDR:2377` on the node make a two-node swarm.
#
# The registry serves TLS with a throwaway CA made in DIR: the host's engine, which is not ours
# to restart with --insecure-registry, refuses plain HTTP to any address outside 127.0.0.0/8.
# Docker reads /etc/docker/certs.d/<addr>:<port>/ca.crt on every pull and push, so trusting the
# CA there for each ADDR (default: 127.0.0.1 and the HOST_ADDR of every node that is up) needs
# no engine restart; registry-down removes exactly those directories. Listens on
# ${BERTH_REGISTRY_LISTEN:-0.0.0.0}:PORT. With BERTH_REGISTRY_LOGIN=user:password it asks for
# that login (htpasswd, bcrypt) on every request.
set -euo pipefail

NET_PREFIX=10.213
STATE_BASE=/run # /run/berth-NAME, /run/berth-registry-PORT
DATA_BASE=/var/lib # /var/lib/berth-NAME
CERTS_D=/etc/docker/certs.d
log() { echo "swarm-node: $*" >&2; }
die() {
  log "$*"
  exit 1
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

check_name() {
  [[ "$1" =~ ^[a-z0-9]{1,10}$ ]] || die "node name '$1': 1-10 of [a-z0-9] (it names a netns and a veth)"
}

# The third octet: INDEX when given, else a hash of NAME in 2..251.
node_index() {
  local name=$1 index=${2:-}
  if [ -z "$index" ]; then
    index=$(($(printf '%s' "$name" | cksum | cut -d' ' -f1) % 250 + 2))
  fi
  [[ "$index" =~ ^[0-9]+$ ]] && [ "$index" -ge 1 ] && [ "$index" -le 254 ] ||
    die "index '$index' must be 1-254"
  echo "$index"
}

node_paths() {
  NS="berth-$1"
  VETH_HOST="bth-$1"
  VETH_PEER="btn-$1"
  RUN="$STATE_BASE/berth-$1"
  DATA="$DATA_BASE/berth-$1"
  SOCK="$RUN/docker.sock"
  EXEC="$RUN/exec"
  PIDFILE="$RUN/docker.pid"
  CGROUP="berth-$1"
}

engine_answers() { docker -H "unix://$1" info --format '{{.ID}}' >/dev/null 2>&1; }

# pid in PIDFILE if it is a dockerd that serves SOCK.
node_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q -- "dockerd .*unix://$SOCK" || return 1
  echo "$pid"
}

print_node() {
  local index
  index=$(cat "$RUN/index")
  echo "DOCKER_HOST=unix://$SOCK"
  echo "NODE_ADDR=$NET_PREFIX.$index.2"
  echo "HOST_ADDR=$NET_PREFIX.$index.1"
}

cmd_up() {
  local name=$1 index pid host_addr node_addr other
  check_name "$name"
  node_paths "$name"
  if node_pid >/dev/null && engine_answers "$SOCK"; then
    print_node
    return 0
  fi
  # Whatever a killed earlier run left goes first; whatever this one leaves on a failure, too.
  cmd_down "$name" >/dev/null 2>&1 || true
  trap 'rc=$?; [ $rc -eq 0 ] || cmd_down "'"$name"'" >/dev/null 2>&1 || true' EXIT
  index=$(node_index "$name" "${2:-}")
  host_addr="$NET_PREFIX.$index.1"
  node_addr="$NET_PREFIX.$index.2"
  other=$(ip -o -4 addr show | awk -v a="$host_addr/30" '$4 == a {print $2}')
  [ -z "$other" ] || die "$host_addr is already on $other: pass another INDEX (swarm-node.sh up $name N)"
  command -v dockerd >/dev/null || die "dockerd is not installed (scripts/ensure-docker.sh)"

  mkdir -p "$RUN" "$EXEC" "$DATA"
  chmod 0700 "$RUN" "$DATA"
  echo "$index" >"$RUN/index"
  # Docker 20.10 keeps its engine ID in /etc/docker/key.json unless told otherwise (a key of
  # daemon.json, no flag): two engines sharing it would report one ID.
  if grep -qa -- 'deprecated-key-path' "$(command -v dockerd)"; then
    printf '{"deprecated-key-path": "%s"}\n' "$DATA/key.json" >"$RUN/daemon.json"
  else
    echo '{}' >"$RUN/daemon.json"
  fi

  ip netns add "$NS"
  ip link add "$VETH_HOST" type veth peer name "$VETH_PEER"
  ip link set "$VETH_PEER" netns "$NS"
  ip addr add "$host_addr/30" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  ip -n "$NS" link set lo up
  ip -n "$NS" link set "$VETH_PEER" name eth0
  ip -n "$NS" addr add "$node_addr/30" dev eth0
  ip -n "$NS" link set eth0 up

  # No default bridge unless asked: a task on no network (berth's services) needs one for a
  # host-mode port; its address is the node's own, 10.214.X.1/24.
  local bridge=(--bridge=none)
  if [ "${BERTH_NODE_BRIDGE:-0}" = 1 ]; then
    bridge=(--bip "10.214.$index.1/24")
  fi
  local args=(
    --data-root "$DATA"
    --exec-root "$EXEC"
    --pidfile "$PIDFILE"
    -H "unix://$SOCK"
    --config-file "$RUN/daemon.json"
    "${bridge[@]}"
    --containerd-namespace "berth-$name"
    --containerd-plugins-namespace "berth-$name-plugins"
    --cgroup-parent "/$CGROUP"
    --insecure-registry "$host_addr"
    --insecure-registry "$NET_PREFIX.0.0/16"
    --log-level warn
  )
  # Its own hostname, so `docker node ls` tells the nodes apart.
  setsid nsenter --net="/run/netns/$NS" -- unshare --uts -- \
    sh -c 'hostname "$1" && shift && exec "$@"' sh "berth-$name" dockerd "${args[@]}" \
    </dev/null >"$RUN/dockerd.log" 2>&1 &

  for _ in $(seq 1 60); do
    if engine_answers "$SOCK"; then
      print_node
      log "engine $name answers on $SOCK ($(docker -H "unix://$SOCK" version --format '{{.Server.Version}}'))"
      return 0
    fi
    if ! kill -0 $! 2>/dev/null; then
      break
    fi
    sleep 1
  done
  log "engine $name did not answer; its log:"
  tail -n 30 "$RUN/dockerd.log" >&2 || true
  cmd_down "$name" || true
  return 1
}

# pids of every process whose command line names one of our roots, or that sits in our
# network namespace or cgroup (containers, shims, containerd).
our_pids() {
  local pid cmd
  {
    ip netns pids "$NS" 2>/dev/null || true
    cat /sys/fs/cgroup/*/"$CGROUP"/tasks /sys/fs/cgroup/*/"$CGROUP"/*/tasks \
      /sys/fs/cgroup/*/"$CGROUP"/*/*/tasks 2>/dev/null || true
    for pid in /proc/[0-9]*; do
      cmd=$({ tr '\0' ' ' <"$pid/cmdline"; } 2>/dev/null) || continue
      case "$cmd" in
        *"$RUN/"* | *"$DATA/"* | *"$DATA "*) echo "${pid#/proc/}" ;;
      esac
    done
  } | { grep -vx -e "$$" -e "${BASHPID:-$$}" || true; } | sort -un
}

# Mount points at or under one of our roots, deepest first.
our_mounts() {
  awk -v run="$RUN" -v data="$DATA" '
    $5 == run || index($5, run "/") == 1 || $5 == data || index($5, data "/") == 1 { print $5 }
  ' /proc/self/mountinfo | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

cmd_down() {
  local name=$1 pid m
  check_name "$name"
  node_paths "$name"
  if pid=$(node_pid); then
    # A worker leaving makes its tasks go now, not when the manager notices it is gone.
    if [ "$(docker -H "unix://$SOCK" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ]; then
      timeout 20 docker -H "unix://$SOCK" swarm leave --force >/dev/null 2>&1 || true
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # containerd, shims and container processes dockerd did not take down with it.
  for sig in TERM KILL; do
    pids=$(our_pids)
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086
    kill -"$sig" $pids 2>/dev/null || true
    sleep 2
  done
  [ -z "$(our_pids)" ] || log "processes of $name still alive: $(our_pids | tr '\n' ' ')"
  for m in $(our_mounts); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
  done
  if ip netns list | awk '{print $1}' | grep -qx "$NS"; then
    ip netns delete "$NS"
  fi
  # Deleting the namespace takes the pair with it, a moment later: gone by now or soon.
  ip link delete "$VETH_HOST" 2>/dev/null || true
  for _ in $(seq 1 20); do
    ip link show "$VETH_HOST" >/dev/null 2>&1 || break
    sleep 0.25
  done
  ! ip link show "$VETH_HOST" >/dev/null 2>&1 || log "link $VETH_HOST remains"
  # Leaf cgroups first (cgroup v1: one tree per controller; v2: one tree).
  find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name "$CGROUP" 2>/dev/null |
    while read -r dir; do find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
  if [ -n "$(our_mounts)" ]; then
    die "mounts under $RUN or $DATA remain; not removing them: $(our_mounts | tr '\n' ' ')"
  fi
  rm -rf --one-file-system "$RUN" "$DATA"
  log "node $name is down"
}

registry_paths() {
  [[ "$1" =~ ^[0-9]{1,5}$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || die "port '$1'"
  REG_RUN="$STATE_BASE/berth-registry-$1"
}

# HOST_ADDR of every node that is up.
node_host_addrs() {
  local f
  for f in "$STATE_BASE"/berth-*/index; do
    if [ -f "$f" ]; then
      echo "$NET_PREFIX.$(cat "$f").1"
    fi
  done
}

make_certs() {
  local dir=$1 san=$2
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj /CN=berth-test-registry-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj /CN=berth-test-registry -keyout "$dir/key.pem" -out "$dir/cert.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" \
    >"$dir/cert.ext"
  openssl x509 -req -in "$dir/cert.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 7 -extfile "$dir/cert.ext" -out "$dir/cert.pem" 2>/dev/null
  rm -f "$dir/cert.csr" "$dir/cert.ext"
}

cmd_registry_up() {
  local port=$1 dir=$2
  shift 2
  registry_paths "$port"
  local listen=${BERTH_REGISTRY_LISTEN:-0.0.0.0}
  local addrs=("$@") san a pid code
  if [ ${#addrs[@]} -eq 0 ]; then
    mapfile -t addrs < <(node_host_addrs)
  fi
  addrs=(127.0.0.1 "${addrs[@]}")
  if [ -f "$REG_RUN/pid" ] && pid=$(cat "$REG_RUN/pid") && kill -0 "$pid" 2>/dev/null; then
    log "registry on $port already runs (pid $pid)"
    return 0
  fi
  cmd_registry_down "$port" >/dev/null 2>&1 || true
  if [ ! -x /usr/bin/docker-registry ]; then
    log "installing docker-registry"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq docker-registry >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq docker-registry >/dev/null; }
  fi
  if ss -Hltn "sport = :$port" | grep -q .; then
    die "something already listens on port $port"
  fi
  mkdir -p "$dir/data" "$REG_RUN"
  dir=$(cd "$dir" && pwd)
  san=$(printf 'IP:%s,' "${addrs[@]}")
  make_certs "$dir" "${san%,}"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $listen:$port
  tls:
    certificate: $dir/cert.pem
    key: $dir/key.pem
EOF
  if [ -n "${BERTH_REGISTRY_LOGIN:-}" ]; then
    case "$BERTH_REGISTRY_LOGIN" in *:*) ;; *) die "BERTH_REGISTRY_LOGIN must be user:password" ;; esac
    command -v htpasswd >/dev/null || die "htpasswd is missing (apache2-utils; scripts/ensure-tools.sh)"
    # The password on stdin, not in argv where ps shows it.
    printf '%s\n' "${BERTH_REGISTRY_LOGIN#*:}" |
      htpasswd -iBn "${BERTH_REGISTRY_LOGIN%%:*}" >"$dir/htpasswd"
    printf 'auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n' "$dir/htpasswd" >>"$dir/config.yml"
  fi
  echo "$dir" >"$REG_RUN/dir"
  : >"$REG_RUN/certs"
  [ -d "$CERTS_D" ] || { mkdir -p "$CERTS_D" && echo "$CERTS_D" >>"$REG_RUN/certs"; }
  for a in "${addrs[@]}"; do
    if [ ! -e "$CERTS_D/$a:$port" ]; then
      mkdir -p "$CERTS_D/$a:$port"
      cp "$dir/ca.pem" "$CERTS_D/$a:$port/ca.crt"
      echo "$CERTS_D/$a:$port" >>"$REG_RUN/certs"
    fi
  done
  setsid /usr/bin/docker-registry serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1 &
  echo $! >"$REG_RUN/pid"
  for _ in $(seq 1 30); do
    # 401 is an answer too: a registry that asks for a login.
    code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$dir/ca.pem" "https://127.0.0.1:$port/v2/" 2>/dev/null || true)
    if [ "$code" = 200 ] || [ "$code" = 401 ]; then
      log "registry answers on $listen:$port (trusted for ${addrs[*]})"
      printf 'REGISTRY=%s:%s\n' "${addrs[1]:-127.0.0.1}" "$port"
      return 0
    fi
    kill -0 "$(cat "$REG_RUN/pid")" 2>/dev/null || break
    sleep 0.5
  done
  log "registry did not answer; its log:"
  tail -n 20 "$dir/registry.log" >&2 || true
  cmd_registry_down "$port" || true
  return 1
}

cmd_registry_down() {
  local port=$1 pid d
  registry_paths "$port"
  if [ -f "$REG_RUN/pid" ] && pid=$(cat "$REG_RUN/pid") &&
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q '^/usr/bin/docker-registry serve'; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Deepest first: the certs.d directory itself last, and only when registry-up made it.
  if [ -f "$REG_RUN/certs" ]; then
    tac "$REG_RUN/certs" | while read -r d; do
      case "$d" in
        "$CERTS_D") rmdir "$d" 2>/dev/null || true ;;
        "$CERTS_D"/*) rm -rf "$d" ;;
      esac
    done
  fi
  rm -rf "$REG_RUN"
  log "registry on $port is down"
}

[ $# -ge 1 ] || usage
[ "$(id -u)" = 0 ] || die "needs root (netns, veth, dockerd)"
case "$1" in
  up) [ $# -ge 2 ] && [ $# -le 3 ] || usage; cmd_up "$2" "${3:-}" ;;
  down) [ $# -eq 2 ] || usage; cmd_down "$2" ;;
  registry-up) [ $# -ge 3 ] || usage; shift; cmd_registry_up "$@" ;;
  registry-down) [ $# -eq 2 ] || usage; cmd_registry_down "$2" ;;
  *) usage ;;
esac
