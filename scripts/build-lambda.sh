#!/usr/bin/env bash
# Builds the deployable Lambda zips (provided.al2023): arm64 by default, or
# `scripts/build-lambda.sh --x86-64`. Output: $CARGO_TARGET_DIR/lambda/<function>/bootstrap.zip
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
ensure_venv
arch="${1:---arm64}"
for function in dedup-enrich ingest; do
  log "cargo lambda build --release $arch $function"
  cargo lambda build --release "$arch" --output-format zip -p "$function"
done
ls -la "$CARGO_TARGET_DIR"/lambda/*/bootstrap.zip
