#!/usr/bin/env bash
# Makes a Docker engine answer on /var/run/docker.sock: installs Debian's docker.io when the
# daemon binary is missing and starts dockerd when nothing answers. Idempotent; safe to re-run.
set -euo pipefail

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if engine_answers; then
  exit 0
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-init >/dev/null 2>&1 || [ -x /usr/bin/tini ] || need+=(tini)
command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "ensure-docker: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Docker's --init looks for docker-init; Debian ships tini as the same thing under another name.
if ! command -v docker-init >/dev/null 2>&1 && [ -x /usr/bin/tini-static ]; then
  ln -sf /usr/bin/tini-static /usr/local/bin/docker-init
elif ! command -v docker-init >/dev/null 2>&1 && [ -x /usr/bin/tini ]; then
  ln -sf /usr/bin/tini /usr/local/bin/docker-init
fi

echo "ensure-docker: starting dockerd" >&2
mkdir -p /var/log
nohup dockerd >/var/log/berth-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if engine_answers; then
    echo "ensure-docker: engine $(docker version --format '{{.Server.Version}}') answers" >&2
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60s; its log:" >&2
tail -n 40 /var/log/berth-dockerd.log >&2 || true
exit 1
