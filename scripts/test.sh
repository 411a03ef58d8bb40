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

# Clippy lints the workspace's crates inside the test build instead of in a
# `cargo clippy` pass of its own: clippy-driver wraps rustc for the workspace's
# crates only (RUSTC_WORKSPACE_WRAPPER), so every dependency is compiled once, for
# the tests, rather than once more in check mode (~12-19 min on a cold 2-core
# machine). Same lints, same targets as
# `cargo clippy --workspace --all-targets -- -D warnings`, which still works by hand.
# The later builds in this script (the cargo-lambda loop, the Terraform e2e) inherit
# the wrapper, so they reuse these artifacts too.
clippy_driver="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
if [ -z "$clippy_driver" ]; then
  echo "clippy-driver not found: rustup component add clippy" >&2
  exit 1
fi
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
# clippy-driver reads its own arguments from CLIPPY_ARGS, separated as cargo-clippy does.
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

log "build every target with clippy's lints, -D warnings (workspace lints: no unwrap/expect/panic outside tests)"
cargo test --workspace --all-targets --locked --no-run

log "the deployed function carries no test-only features"
if cargo tree --locked -p dedup-enrich -e normal,build,features -i sightline-core | grep -qE 'fault-points|fakes'; then
  echo "dedup-enrich's own build enables a test-only feature of sightline-core" >&2
  exit 1
fi

log "the workspace's binaries (the cargo-lambda loop and the Terraform e2e zip these)"
cargo build --workspace --bins --locked

log "starting moto"
endpoint="$("$ROOT/scripts/moto.sh" start)"
infra_pid=""
long_pid=""
sam_pid=""
stop_all() {
  # A failed step ends the script early: stop the infrastructure checks and the long
  # tests (each its own process group: terraform, the e2e's runtimes and the test
  # binaries too) before their moto goes.
  if [ -n "$infra_pid" ]; then kill -- -"$infra_pid" 2>/dev/null || true; fi
  if [ -n "$long_pid" ]; then kill -- -"$long_pid" 2>/dev/null || true; fi
  if [ -n "$sam_pid" ]; then kill -- -"$sam_pid" 2>/dev/null || true; fi
  "$ROOT/scripts/moto.sh" stop "$endpoint"
}
trap stop_all EXIT
export SIGHTLINE_AWS_ENDPOINT="$endpoint"
log "moto at $endpoint"

# The infrastructure checks spend most of their time waiting: the Terraform e2e's
# apply and destroy are mostly the AWS provider's own consistency polls (S3
# lifecycle rules: ten matching reads 5 s apart, ~55 s; the SQS queue policy ~25 s).
# They run beside the cargo tests and the cargo-lambda loop, on the same moto (the
# e2e's resources carry a per-run stage name); their output is printed when they end.
infra_log=""
if [ -x "$ROOT/scripts/check-infra.sh" ]; then
  infra_log="$(mktemp "${TMPDIR:-/tmp}/sightline-check-infra.XXXXXX")"
  log "infrastructure checks: started beside the tests (output follows when they end)"
  setsid "$ROOT/scripts/check-infra.sh" >"$infra_log" 2>&1 &
  infra_pid=$!
fi

log "Chromium for the dashboard's browser test"
SIGHTLINE_CHROMIUM="$("$ROOT/scripts/ensure-chromium.sh")"
export SIGHTLINE_CHROMIUM

# cargo test runs its test binaries one after another, so the two longest tests (the
# mixed-fault soak and the slow-store deadline test: about a minute each, mostly
# waiting on moto) run in a second cargo test beside the first, which skips them.
# Both are the same build: nothing compiles twice. The test filters are libtest's;
# the criterion benches (run once each in test mode) take no --skip, so they run
# on their own, unfiltered.
long_tests=(soak_mixed_faults_lose_nothing_and_double_nothing a_short_deadline_with_a_slow_store_settles_a_prefix_each_time_and_drains)
long_log="$(mktemp "${TMPDIR:-/tmp}/sightline-long-tests.XXXXXX")"
log "cargo test, the ${#long_tests[@]} longest tests: started beside the rest (output follows when they end)"
setsid cargo test --workspace --tests --locked -- --exact "${long_tests[@]}" >"$long_log" 2>&1 &
long_pid=$!
skips=()
for t in "${long_tests[@]}"; do skips+=(--skip "$t"); done

log "cargo test (unit, property, integration against moto, the local demo)"
cargo test --workspace --lib --bins --tests --examples --locked -- --exact "${skips[@]}"
cargo test --workspace --benches --locked

log "cargo test, the ${#long_tests[@]} longest tests: waiting for them"
long_rc=0
wait "$long_pid" || long_rc=$?
long_pid=""
# Every other test binary ran none of them: leave out its empty report.
grep -vE '^(running 0 tests|test result: ok\. 0 passed; 0 failed; 0 ignored; 0 measured; [0-9]+ filtered out.*)?$' "$long_log" || true
for t in "${long_tests[@]}"; do
  if ! grep -qE "^test $t \.\.\. ok$" "$long_log"; then
    echo "the long test $t did not pass (or no longer exists: update long_tests in scripts/test.sh)" >&2
    long_rc=1
  fi
done
rm -f "$long_log"
[ "$long_rc" -eq 0 ]

if [ -x "$ROOT/scripts/lambda-loop-test.sh" ]; then
  log "cargo lambda watch + invoke"
  "$ROOT/scripts/lambda-loop-test.sh"
fi

# sam build's arm64 release build runs beside the infrastructure checks' last minute
# (the Terraform e2e's waits) rather than after them.
log "sam build (template.yaml, both functions as arm64 bootstraps, no test-only features): started beside the infrastructure checks"
sam_log="$(mktemp "${TMPDIR:-/tmp}/sightline-sam-build.XXXXXX")"
# The user's build exactly: no clippy wrapper (it builds another target anyway).
setsid env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS "$ROOT/scripts/sam-build-check.sh" >"$sam_log" 2>&1 &
sam_pid=$!

# finish_beside NAME PID LOG: waits for a step started beside the others, prints its
# output, and fails if it failed.
finish_beside() {
  local name="$1" pid="$2" out="$3" rc=0
  log "$name: waiting"
  wait "$pid" || rc=$?
  cat "$out"
  rm -f "$out"
  log "$name: $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)")"
  return "$rc"
}

if [ -n "$infra_pid" ]; then
  finish_beside "infrastructure checks" "$infra_pid" "$infra_log"
  infra_pid=""
fi
finish_beside "sam build" "$sam_pid" "$sam_log"
sam_pid=""

log "all checks passed in $((SECONDS - started))s"
