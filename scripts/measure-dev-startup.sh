#!/usr/bin/env bash
# Measures how long `burstflare dev` takes from exec to its ready line, on a fresh data
# directory (first start) and on the same directory again (restart), RUNS times each.
#
#   scripts/measure-dev-startup.sh [RUNS]     (default 3; builds the debug binary first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-3}
cargo build --quiet --bin burstflare
bin=$PWD/target/debug/burstflare
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

time_to_ready() { # DIR -> prints seconds
  local dir=$1 start end pid fifo
  fifo=$(mktemp -u) && mkfifo "$fifo"
  start=$(date +%s.%N)
  "$bin" dev --data-dir "$dir" --port "$port" >"$fifo" 2>"$dir.log" &
  pid=$!
  if ! grep -m1 -q "^BurstFlare ready at " <"$fifo"; then
    echo "no ready line; log:" >&2; tail -20 "$dir.log" >&2; kill "$pid" 2>/dev/null; exit 1
  fi
  end=$(date +%s.%N)
  kill -TERM "$pid" && wait "$pid" || true
  rm -f "$fifo"
  python3 -c "print(f'{$end - $start:.2f}')"
}

for i in $(seq "$runs"); do
  dir=$(mktemp -d /tmp/bf-startup.XXXXXX)
  first=$(time_to_ready "$dir")
  again=$(time_to_ready "$dir")
  echo "run $i: fresh data dir ${first}s, restart on the same dir ${again}s"
  rm -rf "$dir" "$dir.log"
done
