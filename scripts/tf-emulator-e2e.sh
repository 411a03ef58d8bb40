#!/usr/bin/env bash
# Applies the Terraform stack (infra/examples/emulator -> infra/modules/sightline) to
# a moto server, runs the pipeline end to end against the resources it created, and
# destroys it:
#   1. cargo build --workspace --bins, dedup-enrich and ingest each zipped as `bootstrap` (host builds:
#      moto stores the zips but cannot run provided.al2023 without Docker);
#   2. terraform init (local provider mirror) + apply, with a unique stage per run and
#      the state in a temporary directory;
#   3. tests/infra/emulator_e2e.py: PutRecords to the stream, GetRecords per shard,
#      `cargo lambda invoke` of the zip's bootstrap (served by `cargo lambda watch
#      --only-lambda-apis`, run with the environment Terraform gave the function),
#      then checks the lake, the quarantine bucket and the claim table; checks the
#      front door's HTTP API, route, integration and stage, and POSTs a body through
#      the ingest zip's bootstrap (a second runtime API) into the stream;
#   4. terraform destroy.
# Uses the moto at $SIGHTLINE_AWS_ENDPOINT when set (scripts/test.sh), otherwise
# starts its own with scripts/moto.sh and stops it.
# Needs cargo, python3 and terraform.
# SIGHTLINE_KEEP_E2E=1 keeps the work directory (state, logs, events) and skips destroy.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
ensure_venv
command -v terraform >/dev/null || { echo "terraform is not on PATH" >&2; exit 1; }

started=$SECONDS
TF_DIR="infra/examples/emulator"
source "$ROOT/scripts/terraform-lib.sh"
# A data directory of its own (inside check-infra's, which find_plugin_dir skips): the e2e starts
# at once, beside check-infra's own init and validate of the same root.
TF_DATA_ROOT="$TF_DATA_ROOT/e2e"
work="$(mktemp -d "${TMPDIR:-/tmp}/sightline-tf-e2e.XXXXXX")"
# Unique per run (the module allows [a-z][a-z0-9]{0,11}): runs sharing one moto do not collide.
stage="e2e$(printf '%05x' $(( ($(date +%s) * 100 + RANDOM % 100) % 1048576 )))"
watch_pid=""
ingest_watch_pid=""
tf_vars=()
applied=""
destroyed=""
moto_started=""
timings=()



cleanup() {
  local rc=$?
  local pid
  for pid in "$watch_pid" "$ingest_watch_pid"; do
    if [ -n "$pid" ]; then kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; fi
  done
  if [ -n "$applied" ] && [ -z "$destroyed" ] && [ -z "${SIGHTLINE_KEEP_E2E:-}" ]; then
    log "cleanup: terraform destroy (stage $stage)"
    tf "$TF_DIR" destroy -auto-approve -input=false -no-color -state="$work/terraform.tfstate" "${tf_vars[@]}" >"$work/destroy.log" 2>&1 \
      || { echo "destroy failed; log: $work/destroy.log" >&2; rc=1; }
  fi
  if [ -n "$moto_started" ]; then "$ROOT/scripts/moto.sh" stop "$endpoint"; fi
  if [ -n "${SIGHTLINE_KEEP_E2E:-}" ] || [ "$rc" -ne 0 ]; then
    echo "work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
  echo "tf-emulator-e2e: $([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started))s (${timings[*]:-no step finished})"
  exit "$rc"
}
trap cleanup EXIT

# step NAME COMMAND...: runs and times one step; stops the script when it fails.
step() {
  local name="$1" t0=$SECONDS
  shift
  log "$name"
  if ! "$@"; then
    echo "step failed: $name" >&2
    exit 1
  fi
  timings+=("$name $((SECONDS - t0))s")
  log "$name: $((SECONDS - t0))s"
}

# Every command ends in `|| return 1`: step runs this inside `if`, where set -e is off.
build_zip() {
  # --workspace --bins: the test build's feature set, so nothing is compiled again (the
  # crash harness's fault points come with it, inert without SIGHTLINE_FAULT_POINT; the
  # deployable builds, scripts/build-lambda.sh and sam build, carry none).
  cargo build --locked --workspace --bins || return 1
  # Stripped of line tables and symbols (46 -> 26 MB): the provider sends each zip,
  # base64, in one CreateFunction call, one function at a time; 15 MB took 8-14 s.
  local bin bins="$work/stripped"
  mkdir -p "$bins" || return 1
  for bin in dedup-enrich ingest; do
    if command -v strip >/dev/null; then
      strip -o "$bins/$bin" "$CARGO_TARGET_DIR/debug/$bin" || return 1
    else
      cp "$CARGO_TARGET_DIR/debug/$bin" "$bins/$bin" || return 1
    fi
  done
  # The zips Terraform uploads; the e2e runs the bootstraps it extracts from these same files.
  python3 - "$bins/dedup-enrich" "$work/bootstrap.zip" "$bins/ingest" "$work/ingest.zip" <<'PY'
import sys, zipfile
args = sys.argv[1:]
for src, dst in zip(args[::2], args[1::2]):
    info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
        z.writestr(info, f.read(), compresslevel=1)
PY
  [ -s "$work/bootstrap.zip" ] && [ -s "$work/ingest.zip" ] || return 1
  echo "bootstrap.zip (dedup-enrich): $(stat -c %s "$work/bootstrap.zip") bytes; ingest.zip: $(stat -c %s "$work/ingest.zip") bytes"
}

init_root() {
  tf_init "$TF_DIR" >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; return 1; }
}

tf_apply() {
  applied=1
  if ! tf "$TF_DIR" apply -auto-approve -input=false -no-color -state="$work/terraform.tfstate" "${tf_vars[@]}" >"$work/apply.log" 2>&1; then
    grep -E '^(Error|│)' -A8 "$work/apply.log" | head -80 >&2 || tail -40 "$work/apply.log" >&2
    return 1
  fi
  grep -E '^Apply complete' "$work/apply.log"
  tf "$TF_DIR" output -json -state="$work/terraform.tfstate" >"$work/outputs.json"
}

# start_runtime_api NAME: one `cargo lambda watch` per function (each serves one
# runtime API and its invoke API on a free port); sets runtime_port and runtime_pid.
start_runtime_api() {
  local name="$1" log="$work/watch-$1.log"
  runtime_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  # Only the Lambda runtime and invoke APIs: the e2e starts the zip's bootstrap itself.
  setsid cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P "$runtime_port" >"$log" 2>&1 &
  runtime_pid=$!
  for _ in $(seq 1 200); do
    if grep -q 'starting Runtime server' "$log" 2>/dev/null \
      && python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $runtime_port), 1)" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$runtime_pid" 2>/dev/null; then cat "$log" >&2; return 1; fi
    sleep 0.1
  done
  echo "cargo lambda watch ($name) did not start; log:" >&2
  cat "$log" >&2
  return 1
}

e2e() {
  local invoke_port ingest_port
  start_runtime_api dedup-enrich || return 1
  watch_pid=$runtime_pid invoke_port=$runtime_port
  start_runtime_api ingest || return 1
  ingest_watch_pid=$runtime_pid ingest_port=$runtime_port
  "$VENV/bin/python" "$ROOT/tests/infra/emulator_e2e.py" --endpoint "$endpoint" --outputs "$work/outputs.json" \
    --zip "$work/bootstrap.zip" --runtime-api "http://127.0.0.1:$invoke_port/.rt" --invoke-port "$invoke_port" \
    --ingest-zip "$work/ingest.zip" --ingest-runtime-api "http://127.0.0.1:$ingest_port/.rt" --ingest-invoke-port "$ingest_port" \
    --workdir "$work"
}

tf_destroy() {
  local pid
  for pid in "$watch_pid" "$ingest_watch_pid"; do
    if [ -n "$pid" ]; then kill -- -"$pid" 2>/dev/null || true; fi
  done
  watch_pid="" ingest_watch_pid=""
  # The state is the apply's own, a minute old: reading all ~100 resources back
  # first (about 10 s) would find nothing new.
  if ! tf "$TF_DIR" destroy -auto-approve -input=false -no-color -refresh=false -state="$work/terraform.tfstate" "${tf_vars[@]}" >"$work/destroy.log" 2>&1; then
    destroyed=failed
    grep -E '^(Error|│)' -A8 "$work/destroy.log" | head -80 >&2 || tail -40 "$work/destroy.log" >&2
    return 1
  fi
  destroyed=1
  grep -E '^Destroy complete' "$work/destroy.log"
}

if [ -n "${SIGHTLINE_AWS_ENDPOINT:-}" ]; then
  endpoint="$SIGHTLINE_AWS_ENDPOINT"
else
  endpoint="$("$ROOT/scripts/moto.sh" start)"
  moto_started=1
fi
tf_vars=(-var "endpoint=$endpoint" -var "stage=$stage" -var "lambda_zip_path=$work/bootstrap.zip" -var "ingest_zip_path=$work/ingest.zip")
log "moto at $endpoint; stage $stage; work directory $work"

step "build dedup-enrich + ingest, zip" build_zip
step "terraform init" init_root
step "terraform apply" tf_apply
step "e2e" e2e
if [ -z "${SIGHTLINE_KEEP_E2E:-}" ]; then
  step "terraform destroy" tf_destroy
fi
