#!/usr/bin/env bash
# A two-node Swarm on this machine, end to end, and everything undone afterwards: the host's
# engine becomes a manager advertised on a veth address, a second engine
# (scripts/swarm-node.sh up) joins it as a worker, the local test image goes through a registry
# both pull from, and a 2-replica service spread by node.id must run one task on each engine
# and answer from both, over an overlay network and on a port published on each node.
#
# Touches the host's engine only when it is in no swarm (LocalNodeState inactive), and then
# leaves it as it was (swarm left, docker_gwbridge removed if it was not there), on any exit.
#
#   BERTH_SWARM_NODE (smoke)  BERTH_SWARM_REGISTRY_PORT (5713)  BERTH_SWARM_HOST_PORT (18080)
set -euo pipefail
cd "$(dirname "$0")/.."

NODE=${BERTH_SWARM_NODE:-smoke}
PORT=${BERTH_SWARM_REGISTRY_PORT:-5713}
HOST_PORT=${BERTH_SWARM_HOST_PORT:-18080}
IMAGE=${BERTH_TEST_IMAGE:-berth-test-busybox:1}
SERVICE=berth-smoke-spread
NET=berth-smoke-net
say() { echo "swarm-smoke: $*" >&2; }

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$state" != inactive ]; then
  say "the host's engine is in swarm state '$state': not touching it"
  exit 2
fi
docker image inspect "$IMAGE" >/dev/null || { say "$IMAGE missing (scripts/build-test-image.sh)"; exit 1; }
had_gwbridge=0
docker network inspect docker_gwbridge >/dev/null 2>&1 && had_gwbridge=1

work=$(mktemp -d /tmp/berth-swarm-smoke.XXXXXX)
initialized=0 joined=0 service=0 pushed=0 registry=0 node=0
NODE_SOCK='' REG=''

service_containers() { docker -H "$1" ps -aq --filter "label=com.docker.swarm.service.name=$SERVICE"; }

cleanup() {
  local rc=$?
  set +e
  say "cleaning up (exit $rc)"
  if [ $service = 1 ]; then
    docker service rm "$SERVICE" >/dev/null
    for _ in $(seq 1 30); do
      [ -z "$(service_containers unix:///var/run/docker.sock)" ] &&
        { [ -z "$NODE_SOCK" ] || [ -z "$(service_containers "$NODE_SOCK")" ]; } && break
      sleep 1
    done
  fi
  [ $initialized = 0 ] || docker network rm "$NET" >/dev/null 2>&1
  if [ $joined = 1 ]; then
    timeout 30 docker -H "$NODE_SOCK" swarm leave >/dev/null || timeout 30 docker -H "$NODE_SOCK" swarm leave --force >/dev/null
  fi
  if [ $initialized = 1 ]; then
    timeout 60 docker swarm leave --force >/dev/null
    if [ $had_gwbridge = 0 ] && docker network inspect docker_gwbridge >/dev/null 2>&1; then
      docker network rm docker_gwbridge >/dev/null
    fi
  fi
  [ $pushed = 0 ] || docker image rm "$REG/busybox:1" >/dev/null
  [ $node = 0 ] || scripts/swarm-node.sh down "$NODE"
  [ $registry = 0 ] || scripts/swarm-node.sh registry-down "$PORT"
  rm -rf "$work"
  say "host engine swarm state: $(docker info --format '{{.Swarm.LocalNodeState}}')"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

node=1
out=$(scripts/swarm-node.sh up "$NODE")
NODE_SOCK=$(sed -n 's/^DOCKER_HOST=//p' <<<"$out")
NODE_ADDR=$(sed -n 's/^NODE_ADDR=//p' <<<"$out")
HOST_ADDR=$(sed -n 's/^HOST_ADDR=//p' <<<"$out")
registry=1
scripts/swarm-node.sh registry-up "$PORT" "$work/registry" "$HOST_ADDR" >/dev/null
REG="$HOST_ADDR:$PORT"

initialized=1
docker swarm init --advertise-addr "$HOST_ADDR" --listen-addr "$HOST_ADDR:2377" >/dev/null
token=$(docker swarm join-token -q worker)
joined=1
docker -H "$NODE_SOCK" swarm join --token "$token" --advertise-addr "$NODE_ADDR" \
  --listen-addr "$NODE_ADDR:2377" "$HOST_ADDR:2377"
docker node ls

pushed=1
docker tag "$IMAGE" "$REG/busybox:1"
docker push "$REG/busybox:1" >/dev/null
say "pushed $REG/busybox:1"

service=1
# An attachable overlay network (VXLAN between the engines over the veth), DNS round robin
# instead of a virtual IP, and the port published on each task's own node (mode=host): the
# virtual IP and the ingress routing mesh need IPVS, which a kernel may lack. Each task writes
# the node it runs on into a page and serves it; PID 1 ignores SIGTERM, so a short grace.
docker network create --driver overlay --attachable "$NET" >/dev/null
docker service create --detach --name "$SERVICE" --mode replicated --replicas 2 \
  --placement-pref spread=node.id --stop-grace-period 1s --network "$NET" --endpoint-mode dnsrr \
  --env 'NODE={{.Node.Hostname}}' --publish "mode=host,published=$HOST_PORT,target=8080" \
  "$REG/busybox:1" sh -c 'echo "$NODE" >/tmp/index.html && exec httpd -f -p 8080 -h /tmp' >/dev/null

running=0
for _ in $(seq 1 90); do
  running=$(docker service ps "$SERVICE" --filter desired-state=running --format '{{.CurrentState}}' | grep -c '^Running' || true)
  [ "$running" = 2 ] && break
  sleep 1
done
docker service ps "$SERVICE" --no-trunc --format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}'
[ "$running" = 2 ] || { say "FAIL: $running of 2 tasks running"; exit 1; }

tasks=$(docker service ps -q "$SERVICE" --filter desired-state=running)
nodes=$(xargs docker inspect --format '{{.NodeID}}' <<<"$tasks" | sort -u | wc -l)
host_tasks=$(service_containers unix:///var/run/docker.sock | wc -l)
node_tasks=$(service_containers "$NODE_SOCK" | wc -l)
say "tasks on distinct nodes: $nodes; containers: host engine $host_tasks, node $NODE $node_tasks"
docker -H "$NODE_SOCK" image ls --format 'node pulled {{.Repository}}:{{.Tag}} {{.ID}}' "$REG/busybox"
[ "$nodes" = 2 ] && [ "$host_tasks" = 1 ] && [ "$node_tasks" = 1 ] || { say "FAIL: not one task per node"; exit 1; }
say "PASS: one task on each engine"

# Each task's address on the overlay, asked from a container on the host's engine.
addrs=$(xargs docker inspect --format '{{range .NetworksAttachments}}{{if eq .Network.Spec.Name "'"$NET"'"}}{{range .Addresses}}{{.}} {{end}}{{end}}{{end}}' <<<"$tasks" | sed 's|/[0-9]*||g' | tr -s '\n ' '  ')
# busybox's nc, not wget: the static busybox's name lookups are no test of the overlay.
get='printf "GET /index.html HTTP/1.0\r\n\r\n" | nc -w 3 "$0" 8080 | tail -n 1'
answers=$(for a in $addrs; do
  docker run --rm --network "$NET" "$IMAGE" sh -c "$get" "$a"
done | sort | uniq -c | tr '\n' ';')
say "over the overlay, from a container on the host's engine, to $addrs: $answers"
[ "$(tr ';' '\n' <<<"$answers" | grep -c .)" = 2 ] || { say "FAIL: the overlay did not answer from both nodes"; exit 1; }
say "PASS: the overlay answers from both nodes"

# The port published on each node.
from_host=$(curl -fsS --max-time 3 "http://$HOST_ADDR:$HOST_PORT/index.html")
from_node=$(curl -fsS --max-time 3 "http://$NODE_ADDR:$HOST_PORT/index.html")
say "host-mode port $HOST_PORT: $HOST_ADDR answers '$from_host', $NODE_ADDR answers '$from_node'"
[ "$from_host" != "$from_node" ] || { say "FAIL: host-mode ports"; exit 1; }
say "PASS: host-mode ports answer on both nodes"

if [ -e /proc/net/ip_vs ]; then
  say "IPVS present: the routing mesh and virtual IPs would work here too (not checked)"
else
  say "no IPVS in this kernel: no ingress routing mesh, no service virtual IP (use dnsrr)"
fi
