#!/usr/bin/env bash
# Offline checks of the deployment definitions (template.yaml and infra/), no AWS
# account needed:
#   cfn-lint, sam validate (the SAM transform), terraform fmt, terraform init (local
#   provider mirror) + validate of both example roots, terraform test of the module
#   (plan-time refusals with a mocked provider), checkov on both definitions, pytest
#   tests/infra (both definitions agree with infra/schema.json and with each other, the
#   deploy-day checks, no deprecated provider attributes; the Athena SQL parses as
#   Trino), and scripts/tf-emulator-e2e.sh (terraform apply of
#   infra/examples/emulator to a moto server, the pipeline end to end against what it
#   created, terraform destroy; it starts first and runs beside the other checks,
#   being mostly waits). That last step uses the moto at
#   $SIGHTLINE_AWS_ENDPOINT (scripts/test.sh exports it) or starts its own.
# Runs from anywhere; needs python3 and terraform on PATH (and cargo for the e2e step).
# Every step runs even if an earlier one failed; the last line says what failed, and
# the exit code is non-zero.
#
# Python tools are pinned in requirements-infra.txt (+ infra/constraints.txt) and
# installed into their own venv, next to the project's tool venv: aws-sam-cli and
# checkov pin boto3, networkx and others to versions that differ from what moto in
# requirements-dev.txt resolves to, and sharing one venv would make either set
# silently change the other. Override with SIGHTLINE_INFRA_VENV.
# `scripts/check-infra.sh --ensure-venv` only installs that venv and prints its path
# (scripts/sam-build-check.sh takes the SAM CLI from it).
#
# Speed: the venv is reinstalled only when requirements-infra.txt or the constraints
# change (a stamp file records what was installed), so a warm run does no pip work.
# When it does reinstall (new pins, or a fresh venv), pip's own cache (~/.cache/pip,
# downloaded wheels and HTTP responses) means nothing is downloaded again, so a
# second install takes seconds instead of the minutes of the first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${SIGHTLINE_CACHE:-$HOME/.cache/sightline}"
VENV="${SIGHTLINE_INFRA_VENV:-${SIGHTLINE_VENV:-$CACHE/venv}-infra}"
TF_ROOTS=("infra/examples/complete" "infra/examples/emulator")
TF_MODULE="infra/modules/sightline"
started=$SECONDS

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

passed=()
failed=()
stage="setup"
# The Terraform e2e, while it runs in the background (see below).
e2e_pid=""
e2e_log=""
stop_e2e() {
  if [ -n "$e2e_pid" ]; then kill -- -"$e2e_pid" 2>/dev/null || true; fi
  if [ -n "$e2e_log" ]; then rm -f "$e2e_log"; fi
}
finish() {
  local rc=$?
  stop_e2e
  tf_stop_provider 2>/dev/null || true
  local took=$((SECONDS - started))
  if [ "$stage" = "setup" ]; then
    echo "check-infra: FAILED during setup (exit $rc) after ${took}s"
  elif [ "${#failed[@]}" -gt 0 ]; then
    local names
    names="$(printf '%s, ' "${failed[@]}")"
    echo "check-infra: FAILED: ${names%, } (${#passed[@]} of $((${#passed[@]} + ${#failed[@]})) checks passed, ${took}s)"
  else
    echo "check-infra: all ${#passed[@]} checks passed in ${took}s"
  fi
}
trap finish EXIT

# run NAME COMMAND...: runs one check, records it, never stops the script.
run() {
  local name="$1"
  shift
  local t0=$SECONDS
  log "$name"
  if "$@"; then
    passed+=("$name")
    log "$name: ok ($((SECONDS - t0))s)"
  else
    failed+=("$name")
    log "$name: FAILED ($((SECONDS - t0))s)"
  fi
}

# ------------------------------------------------------------------ Python tools
ensure_venv() {
  local req="$ROOT/requirements-infra.txt" cons="$ROOT/infra/constraints.txt"
  local stamp="$VENV/.sightline-infra-reqs" want
  # scripts/test.sh runs `sam build` (which asks for this venv) beside these checks:
  # one installer at a time.
  mkdir -p "$(dirname "$VENV")"
  exec 8>"$VENV.lock"
  flock 8
  if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "venv at $VENV is broken (Python changed?); recreating it"
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating Python venv at $VENV"
    python3 -m venv "$VENV"
  fi
  want="$(cat "$req" "$cons" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing $(grep -cvE '^\s*(#|$)' "$req") pinned Python tools (first time: a few minutes)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" -c "$cons"
    echo "$want" >"$stamp"
  fi
  exec 8>&- # closed, not inherited: the checks' processes must not hold the lock
}

# ------------------------------------------------------------------ Terraform
# find_plugin_dir, tf ROOT ARGS..., tf_init ROOT ARGS...
source "$ROOT/scripts/terraform-lib.sh"

terraform_init_validate() {
  local plugin_dir root
  plugin_dir="$(find_plugin_dir)"
  if [ -n "$plugin_dir" ]; then
    echo "provider mirror: $plugin_dir"
  else
    echo "no local provider mirror found; using the registry"
  fi
  for root in "${TF_ROOTS[@]}"; do
    tf_init "$root" -upgrade >/dev/null || return 1
  done
  tf_with_served_provider "${TF_ROOTS[0]}" validate_roots
}

validate_roots() {
  local root rc=0
  for root in "${TF_ROOTS[@]}"; do
    echo "$root:"
    tf "$root" validate -no-color || rc=1
  done
  # The provider's schema, for pytest's check that no attribute in use is deprecated.
  tf "${TF_ROOTS[0]}" providers schema -json >"$TF_PROVIDER_SCHEMA" || rc=1
  return "$rc"
}

# The module's own plan-time checks (infra/modules/sightline/tests/*.tftest.hcl): each
# refused setting is planned against a mocked provider and must fail its validation.
terraform_test_module() {
  tf_init "$TF_MODULE" -upgrade >/dev/null || return 1
  tf_with_served_provider "$TF_MODULE" tf "$TF_MODULE" test -no-color
}

# sam needs a region; the dummy credentials are never used (validation is local).
sam_env() {
  env AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    SAM_CLI_TELEMETRY=0 "$@"
}

checkov_run() {
  env -u TF_CLI_CONFIG_FILE BC_SKIP_MAPPING=TRUE checkov --quiet --compact --skip-download "$@"
}

# ------------------------------------------------------------------ the checks
if [ "${1:-}" = "--ensure-venv" ]; then
  ensure_venv
  trap - EXIT
  echo "$VENV"
  exit 0
fi
command -v terraform >/dev/null || { echo "terraform is not on PATH (needed for fmt and validate)" >&2; exit 1; }
ensure_venv
export PATH="$VENV/bin:$PATH"
TF_PROVIDER_SCHEMA="$TF_DATA_ROOT/aws-provider-schema.json"
export SIGHTLINE_TF_PROVIDER_SCHEMA="$TF_PROVIDER_SCHEMA"
stage="checks"

# The Terraform e2e spends most of its time waiting on the AWS provider's own
# consistency polls (S3 lifecycle rules: ten matching reads 5 s apart; the SQS queue
# policy), and it is the longest check, so it starts first and runs beside the others
# (its Terraform data directory is its own); its output is printed when it ends.
e2e_log="$(mktemp "${TMPDIR:-/tmp}/sightline-tf-e2e-log.XXXXXX")"
log "terraform apply to moto + e2e + destroy: started beside the checks below"
setsid "$ROOT/scripts/tf-emulator-e2e.sh" >"$e2e_log" 2>&1 &
e2e_pid=$!
# The checks below are CPU-bound and finish well before the e2e; at a lower
# priority they leave the CPU to its terraform runs (and to the cargo tests
# beside it in scripts/test.sh), whose waits are timed.
renice -n 10 -p $$ >/dev/null 2>&1 || true
wait_e2e() {
  local rc=0
  wait "$e2e_pid" || rc=$?
  e2e_pid=""
  cat "$e2e_log"
  return "$rc"
}

run "terraform fmt" tf . fmt -check -recursive -diff infra
run "terraform validate" terraform_init_validate
run "terraform test (module plan checks)" terraform_test_module
run "cfn-lint" cfn-lint template.yaml
# Plain `sam validate` is the SAM transform's check. (`sam validate --lint` would be
# cfn-lint again: the same installed linter, its default rules, the same template.)
run "sam validate" sam_env sam validate --template-file template.yaml
run "checkov template.yaml" checkov_run --framework cloudformation -f template.yaml
# terraform test files are HCL that checkov cannot parse; they hold no resources.
run "checkov infra/" checkov_run --framework terraform -d infra --skip-path '\.tftest\.hcl$'
run "pytest tests/infra" python -m pytest tests/infra -q -p no:cacheprovider
run "terraform apply to moto + e2e + destroy (waited for)" wait_e2e

[ "${#failed[@]}" -eq 0 ]
