#!/usr/bin/env bash
# Test of the developer loop: runs scripts/run-local.sh (cargo lambda watch +
# invoke against moto) and checks what the three fixtures must produce:
# clean.json 10 events; duplicates.json 4 new (4 repeated in-batch, 1 already
# delivered); bad-records.json 2 delivered (one with an unknown location) and 6
# quarantined; no batch item failures.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
out="$("$ROOT/scripts/run-local.sh")"
summary="$(printf '%s\n' "$out" | sed -n 's/^SUMMARY //p')"
expected='{"lake_events": 16, "unique_ids": 16, "quarantined": 6, "batch_item_failures": 0}'
if [ "$summary" != "$expected" ]; then
  printf '%s\n' "$out" >&2
  echo "lambda loop: expected $expected, got ${summary:-nothing}" >&2
  echo "1 passed, 1 failed"
  exit 1
fi
echo "lambda loop: $summary"
