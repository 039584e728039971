#!/usr/bin/env bash
# Make sure a local Docker daemon answers `docker info`; start `dockerd` in the background if not.
#
# The daemon listens on its default unix socket only (/var/run/docker.sock), never on TCP.
# Log: $BURSTFLARE_DOCKERD_LOG (default /var/log/burstflare-dockerd.log); pid file: /var/run/docker.pid.
# Waits up to $BURSTFLARE_DOCKERD_TIMEOUT seconds (default 60) for the daemon to answer.
set -euo pipefail

log=${BURSTFLARE_DOCKERD_LOG:-/var/log/burstflare-dockerd.log}
timeout=${BURSTFLARE_DOCKERD_TIMEOUT:-60}
pidfile=/var/run/docker.pid

docker_up() { docker info >/dev/null 2>&1; }

if docker_up; then
  exit 0
fi

for cmd in docker dockerd; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "start-dockerd: '$cmd' not found; run scripts/setup.sh" >&2
    exit 1
  fi
done
if [[ $(id -u) -ne 0 ]]; then
  echo "start-dockerd: the Docker daemon is not reachable and starting dockerd needs root" >&2
  exit 1
fi

# A dockerd that is still starting up (or one we started a moment ago) owns the pid file: wait for it
# instead of starting a second one. A pid file left by a dead daemon would make dockerd refuse to start.
running_pid=""
if [[ -s $pidfile ]]; then
  pid=$(<"$pidfile")
  if [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/comm ]] && [[ $(</proc/"$pid"/comm) == dockerd ]]; then
    running_pid=$pid
  else
    rm -f "$pidfile"
  fi
fi

if [[ -z $running_pid ]]; then
  mkdir -p "$(dirname "$log")"
  echo "start-dockerd: starting dockerd (log: $log)"
  # setsid: not in our process group, so Ctrl-C in `make` does not take the daemon down with it.
  # The daemon must not inherit our other descriptors (e.g. setup.sh's lock file, a CI log pipe).
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid nohup dockerd --pidfile "$pidfile" </dev/null >>"$log" 2>&1
  ) &
  running_pid=$!
else
  echo "start-dockerd: dockerd (pid $running_pid) is running; waiting for it to answer"
fi

deadline=$((SECONDS + timeout))
until docker_up; do
  if ! kill -0 "$running_pid" 2>/dev/null && ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "start-dockerd: dockerd exited; last lines of $log:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "start-dockerd: dockerd did not answer within ${timeout}s; last lines of $log:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
  fi
  sleep 0.2
done
echo "start-dockerd: Docker daemon is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
