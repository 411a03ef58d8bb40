#!/usr/bin/env bash
# Starts or stops a local moto server on loopback. Each start is its own server on
# a free port, so the test suite's moto and the lambda loop's never stop each other.
#   scripts/moto.sh start            -> prints the endpoint URL; state in $CACHE/moto.<port>.{pid,log}
#   scripts/moto.sh stop ENDPOINT    -> stops the server started for that endpoint
#   scripts/moto.sh stop             -> stops every server this script started
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mkdir -p "$CACHE"

start() {
  ensure_venv
  local port state
  port="${MOTO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
  state="$CACHE/moto.$port"
  nohup "$VENV/bin/python" "$ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$state.log" 2>&1 &
  echo $! >"$state.pid"
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

stop_pidfile() {
  kill "$(cat "$1")" 2>/dev/null || true
  rm -f "$1" "${1%.pid}.log"
}

stop() {
  local endpoint="${1:-}" f
  if [ -n "$endpoint" ]; then
    f="$CACHE/moto.${endpoint##*:}.pid"
    if [ -f "$f" ]; then stop_pidfile "$f"; fi
    return 0
  fi
  for f in "$CACHE"/moto.*.pid; do
    if [ -f "$f" ]; then stop_pidfile "$f"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start | stop [ENDPOINT]" >&2; exit 2 ;;
esac
