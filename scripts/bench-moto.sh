#!/usr/bin/env bash
# Bench command: wall time of a 1,000-record batch against a local moto server,
# claim concurrency 1 versus the default.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
ensure_venv
endpoint="$("$ROOT/scripts/moto.sh" start)"
trap '"$ROOT/scripts/moto.sh" stop "$endpoint"' EXIT
SIGHTLINE_AWS_ENDPOINT="$endpoint" cargo run --locked -q -p sightline-integration-tests --example moto_batch_wall_time
