#!/usr/bin/env bash
# The README's first command: the whole pipeline on this machine, no AWS account.
# Generates camera traffic (1,000,000 events by default), runs it through
# dedup-enrich's batch code with the embedded claim store, Parquet lake and
# quarantine, and writes lake/dashboard.html. Extra arguments go to `sightline demo`
# (see `scripts/demo.sh --help`); the lake lands in ./lake unless --lake says.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

log "building the sightline command (first build: about 20 min on 2 cores, DataFusion is most of it)"
# The whole workspace's binaries, with the features the test build uses, so
# scripts/test.sh afterwards reuses every dependency built here.
(cd "$ROOT" && cargo build --locked --workspace --bins)
exec "$CARGO_TARGET_DIR/debug/sightline" demo "$@"
