# Sourced by scripts/check-infra.sh and scripts/tf-emulator-e2e.sh (both set CACHE):
# terraform with one data directory per root under the cache, and init against the
# machine's local provider mirror.

TF_DATA_ROOT="$CACHE/terraform"

# The registry may be unreachable; terraform init then needs a local provider mirror.
# It is found (and the answer cached) by searching for the AWS provider binary and
# taking the directory that holds registry.terraform.io/. SIGHTLINE_TF_PLUGIN_DIR
# overrides; with no mirror at all, init falls back to the registry.
find_plugin_dir() {
  local cached="$CACHE/tf-plugin-dir" bin dir
  if [ -n "${SIGHTLINE_TF_PLUGIN_DIR:-}" ]; then
    echo "$SIGHTLINE_TF_PLUGIN_DIR"
    return
  fi
  if [ -f "$cached" ] && [ -d "$(cat "$cached")/registry.terraform.io" ]; then
    cat "$cached"
    return
  fi
  bin="$(find / \( -path /proc -o -path /sys -o -path /dev -o -path "$TF_DATA_ROOT" -o -name .terraform \) -prune \
    -o -name 'terraform-provider-aws*' -path '*/registry.terraform.io/*' -print 2>/dev/null | head -n 1 || true)"
  if [ -n "$bin" ]; then
    dir="${bin%%/registry.terraform.io/*}"
    mkdir -p "$CACHE"
    echo "$dir" >"$cached"
    echo "$dir"
  fi
}

# tf ROOT ARGS...: terraform -chdir=ROOT, with TF_DATA_DIR under the cache, one per
# root (infra/examples/complete -> examples-complete).
tf() {
  local root="$1" unset_cfg=()
  shift
  # A TF_CLI_CONFIG_FILE pointing at a missing file only prints warnings.
  if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -f "$TF_CLI_CONFIG_FILE" ]; then unset_cfg=(-u TF_CLI_CONFIG_FILE); fi
  env "${unset_cfg[@]}" TF_DATA_DIR="$(tf_data_dir "$root")" TF_IN_AUTOMATION=1 terraform -chdir="$root" "$@"
}

# tf_data_dir ROOT: ROOT's data directory under the cache.
tf_data_dir() {
  local data="${1#infra/}"
  echo "$TF_DATA_ROOT/${data//\//-}"
}

# tf_init ROOT ARGS...: terraform init without a backend, from the local provider
# mirror when there is one.
tf_init() {
  local root="$1" plugin_dir mirror=()
  shift
  plugin_dir="$(find_plugin_dir)"
  if [ -n "$plugin_dir" ]; then mirror=(-plugin-dir="$plugin_dir"); fi
  mkdir -p "$TF_DATA_ROOT"
  tf "$root" init -backend=false -input=false "${mirror[@]}" "$@"
}

# tf_serve_provider ROOT: serve the AWS provider installed for ROOT (by tf_init) once,
# in its debug mode, and point terraform at it (TF_REATTACH_PROVIDERS) until
# tf_stop_provider. Otherwise each command, and each run block of `terraform test`,
# launches the 700 MB provider binary two or three times (0.5-4 CPU-s each): a warm
# `terraform test` of the module takes 41 CPU-s that way and 15 (plus 6 in the
# provider) served. Only for commands that never configure the provider (validate,
# providers schema, test with mock_provider): a served provider refuses a second
# configuration, so plan and apply launch their own. If it does not start, the
# commands launch the provider as usual.
TF_SERVED_PROVIDER_PID=""
TF_SERVED_PROVIDER_OUT=""
tf_serve_provider() {
  local root="$1" bin out reattach=""
  bin="$(find -L "$(tf_data_dir "$root")/providers" -name 'terraform-provider-aws*' 2>/dev/null | head -n 1)"
  [ -n "$bin" ] || return 0
  # A file of its own each time: a reused one could still hold the address of a
  # provider served (and stopped) before, until the new one truncates it.
  mkdir -p "$TF_DATA_ROOT"
  out="$(mktemp "$TF_DATA_ROOT/served-provider.XXXXXX")"
  "$bin" -debug >"$out" 2>&1 &
  TF_SERVED_PROVIDER_PID=$!
  TF_SERVED_PROVIDER_OUT="$out"
  for _ in $(seq 100); do
    reattach="$(sed -n "s/^.*TF_REATTACH_PROVIDERS='\(.*\)'.*$/\1/p" "$out" | head -n 1)"
    [ -n "$reattach" ] && break
    sleep 0.1
  done
  # Only this process's address (the JSON names its pid).
  if [ -z "$reattach" ] || [[ "$reattach" != *"\"Pid\":$TF_SERVED_PROVIDER_PID,"* ]]; then
    tf_stop_provider
    return 0
  fi
  export TF_REATTACH_PROVIDERS="$reattach"
}

# tf_with_served_provider ROOT COMMAND...: COMMAND with ROOT's provider served
# (tf_serve_provider), stopped afterwards whatever COMMAND returned.
tf_with_served_provider() {
  local root="$1" rc=0
  shift
  tf_serve_provider "$root"
  "$@" || rc=$?
  tf_stop_provider
  return "$rc"
}

tf_stop_provider() {
  if [ -n "$TF_SERVED_PROVIDER_PID" ]; then kill "$TF_SERVED_PROVIDER_PID" 2>/dev/null || true; fi
  if [ -n "$TF_SERVED_PROVIDER_OUT" ]; then rm -f "$TF_SERVED_PROVIDER_OUT"; fi
  TF_SERVED_PROVIDER_PID=""
  TF_SERVED_PROVIDER_OUT=""
  unset TF_REATTACH_PROVIDERS
}
