#!/usr/bin/env bash
# moto server (S3 and DynamoDB; its Lambda cannot run code here) on a free port.
#   start STATE_DIR  -> prints `export JOINT_TEST_MOTO_URL=…`; PID in STATE_DIR/moto.pid
#   stop STATE_DIR
set -euo pipefail
cmd=${1:?start|stop}
state=${2:?state dir}
pidfile="$state/moto.pid"

case "$cmd" in
start)
  command -v moto_server >/dev/null || { echo "moto_server not found (pip install 'moto[server]')" >&2; exit 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  moto_server -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then
      echo "export JOINT_TEST_MOTO_URL=http://127.0.0.1:$port"
      exit 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "moto_server exited during start:" >&2
      tail -20 "$state/moto.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "moto_server did not answer on port $port" >&2
  exit 1
  ;;
stop)
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  ;;
*)
  echo "usage: $0 start|stop STATE_DIR" >&2
  exit 2
  ;;
esac
