#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, lints, unit and property tests,
# integration tests against a local moto server, the cargo-lambda loop, and the
# infrastructure checks. Installs what it needs (Python tools into a venv).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
started=$SECONDS

ensure_venv

log "KPL fixtures match what aws-kinesis-agg builds"
python3 "$ROOT/scripts/gen-kpl-fixtures.py" --check

log "cargo fmt --check"
cargo fmt --all -- --check

log "rust-version is true (covers every dependency and the language features in use)"
python3 "$ROOT/scripts/check-msrv.py"

log "the scripts' builds share every dependency artifact with the test build"
python3 "$ROOT/scripts/check-build-sharing.py"

log "cargo clippy --all-targets -D warnings (workspace lints: no unwrap/expect/panic outside tests)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "the deployed function carries no test-only features"
if cargo tree --locked -p dedup-enrich -e normal,build,features -i sightline-core | grep -qE 'fault-points|fakes'; then
  echo "dedup-enrich's own build enables a test-only feature of sightline-core" >&2
  exit 1
fi

log "starting moto"
endpoint="$("$ROOT/scripts/moto.sh" start)"
trap '"$ROOT/scripts/moto.sh" stop "$endpoint"' EXIT
export SIGHTLINE_AWS_ENDPOINT="$endpoint"
log "moto at $endpoint"

log "Chromium for the dashboard's browser test"
SIGHTLINE_CHROMIUM="$("$ROOT/scripts/ensure-chromium.sh")"
export SIGHTLINE_CHROMIUM

log "cargo test (unit, property, integration against moto, the local demo)"
cargo test --workspace --locked

if [ -x "$ROOT/scripts/lambda-loop-test.sh" ]; then
  log "cargo lambda watch + invoke"
  "$ROOT/scripts/lambda-loop-test.sh"
fi

if [ -x "$ROOT/scripts/check-infra.sh" ]; then
  log "infrastructure checks"
  "$ROOT/scripts/check-infra.sh"
fi

log "all checks passed in $((SECONDS - started))s"
