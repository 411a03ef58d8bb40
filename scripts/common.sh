# Sourced by the other scripts: shared paths and the Python tool venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SIGHTLINE_CACHE:-$HOME/.cache/sightline}"
# Builds reuse one target directory outside the clone, so CI's fresh clones stay warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
VENV="${SIGHTLINE_VENV:-$CACHE/venv}"

# Each line carries the seconds since the script started, so a slow phase shows in CI logs.
log() { printf '\033[1m==> [%dm%02ds] %s\033[0m\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

# Creates the venv and installs pinned Python tools (moto, cargo-lambda) once;
# reruns are a quick no-op unless requirements-dev.txt changes.
ensure_venv() {
  local req="$ROOT/requirements-dev.txt" stamp="$VENV/.sightline-dev-reqs"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating Python venv at $VENV"
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
    log "installing $(grep -cvE '^\s*(#|$)' "$req") pinned Python tools"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}
