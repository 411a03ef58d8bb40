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
  local root="$1" data unset_cfg=()
  shift
  data="${root#infra/}"
  data="${data//\//-}"
  # A TF_CLI_CONFIG_FILE pointing at a missing file only prints warnings.
  if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -f "$TF_CLI_CONFIG_FILE" ]; then unset_cfg=(-u TF_CLI_CONFIG_FILE); fi
  env "${unset_cfg[@]}" TF_DATA_DIR="$TF_DATA_ROOT/$data" TF_IN_AUTOMATION=1 terraform -chdir="$root" "$@"
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
