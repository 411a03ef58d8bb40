#!/usr/bin/env bash
# Runs dedup-enrich locally, the way a developer iterates on it: a moto server
# stands in for AWS, `cargo lambda watch` serves the function, and
# `cargo lambda invoke` sends the three Kinesis fixtures through it (clean,
# duplicates, bad records). Prints each batch response and what landed in S3.
# No AWS account needed; installs its Python tools into the project venv.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
ensure_venv

port="${LAMBDA_INVOKE_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
watch_log="$CACHE/lambda-watch.log"
watch_pid=""
endpoint=""
cleanup() {
  if [ -n "$watch_pid" ]; then kill -- -"$watch_pid" 2>/dev/null || kill "$watch_pid" 2>/dev/null || true; fi
  if [ -n "$endpoint" ]; then "$ROOT/scripts/moto.sh" stop "$endpoint"; fi
}
trap cleanup EXIT

# The workspace's binaries with the workspace's features (the same build as
# scripts/demo.sh and the Terraform e2e), not `-p dedup-enrich`, which resolves
# features for that package alone and compiles part of the tree a second time.
log "building the workspace's binaries (dedup-enrich among them)"
cargo build --locked --workspace --bins

endpoint="$("$ROOT/scripts/moto.sh" start)"
log "moto at $endpoint; creating table, buckets and streams"
prefix="sightline-local"
env_file="$CACHE/local.env"
{
  echo "AWS_ENDPOINT_URL=$endpoint"
  echo "AWS_REGION=us-east-1"
  echo "AWS_ACCESS_KEY_ID=testing"
  echo "AWS_SECRET_ACCESS_KEY=testing"
  echo "RUST_LOG=\"${SIGHTLINE_LOG:-info}\""
  python3 "$ROOT/scripts/moto_resources.py" "$endpoint" "$prefix"
} >"$env_file"

log "cargo lambda watch on 127.0.0.1:$port (log: $watch_log)"
setsid cargo lambda watch --bin dedup-enrich --env-file "$env_file" -P "$port" >"$watch_log" 2>&1 &
watch_pid=$!

invoke() {
  cargo lambda invoke dedup-enrich -P "$port" --data-file "functions/dedup-enrich/events/$1.json" --output-format json
}

log "waiting for the function to build and answer"
ready=""
for _ in $(seq 1 600); do
  if out="$(invoke clean 2>/dev/null)"; then ready=1; break; fi
  if ! kill -0 "$watch_pid" 2>/dev/null; then cat "$watch_log" >&2; exit 1; fi
  sleep 0.5
done
if [ -z "$ready" ]; then echo "cargo lambda watch never answered; log:" >&2; cat "$watch_log" >&2; exit 1; fi

responses=("$out")
echo "clean.json -> $out"
for fixture in duplicates bad-records; do
  out="$(invoke "$fixture")"
  echo "$fixture.json -> $out"
  responses+=("$out")
done

python3 - "$endpoint" "$prefix" "${responses[@]}" <<'PY'
import json, sys
import boto3
endpoint, prefix, *responses = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
def lines(bucket):
    out = []
    for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        out += [json.loads(l) for l in body.splitlines() if l.strip()]
    return out
events, bad = lines(f"{prefix}-lake"), lines(f"{prefix}-quarantine")
print(f"\nlake: {len(events)} events ({len({e['detection_oid'] for e in events})} unique ids)")
for e in events[:3]:
    print("  ", json.dumps(e))
print(f"quarantine: {len(bad)} records")
for b in bad:
    print(f"   seq {b['sequence_number'][-4:]}: {b['reason']}: {b['message']}")
failures = sum(len(json.loads(r).get("batchItemFailures", [])) for r in responses)
print("SUMMARY " + json.dumps({"lake_events": len(events),
      "unique_ids": len({e['detection_oid'] for e in events}),
      "quarantined": len(bad), "batch_item_failures": failures}))
PY
