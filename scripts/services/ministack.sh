#!/usr/bin/env bash
# ministack (S3, DynamoDB, Lambda running provided.al2023 bootstraps) on a free port.
#   start STATE_DIR  -> prints `export JOINT_TEST_MINISTACK_URL=…`; PID in STATE_DIR/ministack.pid
#   stop STATE_DIR   -> stops it and deletes the Lambda code it extracted under the temp dir
set -euo pipefail
cmd=${1:?start|stop}
state=${2:?state dir}
pidfile="$state/ministack.pid"
portfile="$state/ministack.port"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case "$cmd" in
start)
  command -v ministack >/dev/null || { echo "ministack not found (pip install ministack==1.5.33)" >&2; exit 1; }
  port=$(free_port)
  echo "$port" >"$portfile"
  # Plain background command so $! is ministack's own PID.
  GATEWAY_PORT=$port MINISTACK_HOST=127.0.0.1 LOG_LEVEL=WARNING \
    ministack >"$state/ministack.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/_ministack/health" >/dev/null 2>&1; then
      echo "export JOINT_TEST_MINISTACK_URL=http://127.0.0.1:$port"
      exit 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "ministack exited during start:" >&2
      tail -20 "$state/ministack.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "ministack did not become healthy on port $port" >&2
  tail -20 "$state/ministack.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    # Its Lambda workers are its children: stop them with it.
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  if [ -f "$portfile" ]; then
    port=$(cat "$portfile")
    tmp=$(python3 -c 'import tempfile; print(tempfile.gettempdir())')
    rm -rf "$tmp/ministack-provided-code-$port" "$tmp/ministack-lambda-extract-$port"
    rm -f "$portfile"
  fi
  ;;
*)
  echo "usage: $0 start|stop STATE_DIR" >&2
  exit 2
  ;;
esac
