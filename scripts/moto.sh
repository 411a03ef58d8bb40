#!/usr/bin/env bash
# Starts or stops a local moto server on loopback.
#   scripts/moto.sh start   -> prints the endpoint URL; state in $CACHE/moto.{pid,port}
#   scripts/moto.sh stop
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

state="$CACHE/moto"
mkdir -p "$CACHE"

start() {
  ensure_venv
  stop >/dev/null 2>&1 || true
  local port
  port="${MOTO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state.log" 2>&1 &
  echo $! >"$state.pid"
  echo "$port" >"$state.port"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then
      echo "http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "moto did not start; log:" >&2
  cat "$state.log" >&2
  return 1
}

stop() {
  if [ -f "$state.pid" ]; then
    kill "$(cat "$state.pid")" 2>/dev/null || true
    rm -f "$state.pid" "$state.port"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
