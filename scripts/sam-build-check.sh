#!/usr/bin/env bash
# `sam build` from this checkout, then checks of what it produced:
#   - both functions come out as .aws-sam/build/<LogicalId>/bootstrap, ELF 64-bit
#     little-endian AArch64 executables (template.yaml: provided.al2023, arm64), and the
#     built template points each function at its own directory;
#   - neither build carries a test-only feature of sightline-core (`fault-points`,
#     `fakes`): `cargo tree` for the arm64 target, as scripts/test.sh does for the host,
#     and none of those modules' strings in the bootstraps.
#
#   scripts/sam-build-check.sh                  # CARGO_TARGET_DIR as the scripts set it (~/.cache/sightline/target)
#   scripts/sam-build-check.sh --no-target-dir  # CARGO_TARGET_DIR unset: SAM finds the workspace's target/ itself
#
# Both must work: SAM CLI >= 1.165 (aws-lambda-builders >= 1.66) asks `cargo metadata`
# for the workspace's target directory when CARGO_TARGET_DIR is unset, and leaves an
# explicit one alone. The SAM CLI is requirements-infra.txt's (the venv of
# scripts/check-infra.sh); cargo-lambda and zig come from the project venv
# (requirements-dev.txt). Needs cargo, python3 and rustup (the aarch64 target is added
# if missing). Prints how long `sam build` took.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

mode="target-dir"
case "${1:-}" in
  "") ;;
  --no-target-dir) mode="no-target-dir" ;;
  *) echo "usage: $0 [--no-target-dir]" >&2; exit 2 ;;
esac

ensure_venv # cargo-lambda and zig on PATH
infra_venv="$("$ROOT/scripts/check-infra.sh" --ensure-venv)"
sam="$infra_venv/bin/sam"
TARGET=aarch64-unknown-linux-gnu
FUNCTIONS=(DedupEnrichFunction IngestFunction)
BUILD_DIR="$ROOT/.aws-sam/build"

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
  log "rustup target add $TARGET"
  rustup target add "$TARGET"
fi

if [ "$mode" = "no-target-dir" ]; then
  unset CARGO_TARGET_DIR
  expected_target="$ROOT/target"
else
  expected_target="$CARGO_TARGET_DIR"
fi

log "$("$sam" --version), $(cargo lambda --version), CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-<unset>}"
rm -rf "$BUILD_DIR"
started=$SECONDS
# samconfig.toml's build defaults apply (one function at a time, no SAM cache: cargo's is the one that counts).
env SAM_CLI_TELEMETRY=0 "$sam" build --template-file template.yaml
took=$((SECONDS - started))
log "sam build: ${took}s"

failed=0
fail() { echo "FAILED: $*" >&2; failed=1; }

# The workspace's shared target directory is where cargo lambda built both binaries.
for binary in dedup-enrich ingest; do
  built="$expected_target/lambda/$binary/bootstrap"
  [ -f "$built" ] || fail "$built is missing: the build did not use the expected target directory"
done

python3 - "$BUILD_DIR" "${FUNCTIONS[@]}" <<'PY' || failed=1
import os
import pathlib
import sys

build_dir = pathlib.Path(sys.argv[1])
EM_AARCH64 = 183
problems = []
for function in sys.argv[2:]:
    path = build_dir / function / "bootstrap"
    if not path.is_file():
        problems.append(f"{path} is missing")
        continue
    head = path.read_bytes()[:20]
    machine = int.from_bytes(head[18:20], "little")
    if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1 or machine != EM_AARCH64:
        problems.append(f"{path} is not an ELF 64-bit little-endian AArch64 executable (class {head[4]}, data {head[5]}, machine {machine})")
    if not os.access(path, os.X_OK):
        problems.append(f"{path} is not executable")
    extra = sorted(p.name for p in path.parent.iterdir() if p.name != "bootstrap")
    if extra:
        problems.append(f"{path.parent} holds more than bootstrap: {extra}")
    print(f"{function}/bootstrap: ELF64 AArch64, {path.stat().st_size / 1e6:.1f} MB")

# The template sam deploy will package must point at those directories.
text = (build_dir / "template.yaml").read_text()
for function in sys.argv[2:]:
    if f"CodeUri: {function}\n" not in text:
        problems.append(f"the built template does not point {function} at {function}/")
for p in problems:
    print(f"FAILED: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# Test-only features: the dependency graph for the Lambda target, then the binaries.
for package in dedup-enrich ingest; do
  if cargo tree --locked -p "$package" --target "$TARGET" -e normal,build,features -i sightline-core | grep -qE 'fault-points|fakes'; then
    fail "$package's build for $TARGET enables a test-only feature of sightline-core"
  fi
done
for function in "${FUNCTIONS[@]}"; do
  if grep -qaE 'SIGHTLINE_FAULT_POINT|fault point reached|injected entry failure' "$BUILD_DIR/$function/bootstrap"; then
    fail "$function/bootstrap contains strings of sightline-core's fault_points or fakes"
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "sam-build-check ($mode): FAILED after ${took}s of sam build" >&2
  exit 1
fi
echo "sam-build-check ($mode): both functions built as arm64 bootstraps without test-only features; sam build took ${took}s"
