#!/usr/bin/env bash
# Bench command: stripped size of the release binary, and the time from process
# start to its first Runtime API poll (`GET /invocation/next`), over 30 starts
# against a mock Runtime API on loopback. Builds the release binary first.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
cargo build --locked --release -p dedup-enrich
bin="$CARGO_TARGET_DIR/release/dedup-enrich"
python3 - "$bin" <<'PY'
import http.server, os, socket, statistics, subprocess, sys, threading, time

binary = sys.argv[1]
first_poll = {}

class Runtime(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            first_poll.setdefault("t", time.perf_counter())
        self.send_response(500)
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
threading.Thread(target=server.serve_forever, daemon=True).start()
env = dict(os.environ,
           AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
           AWS_LAMBDA_FUNCTION_NAME="dedup-enrich", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
           AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_LOG_STREAM_NAME="bench",
           AWS_LAMBDA_LOG_GROUP_NAME="bench", AWS_REGION="us-east-1",
           AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", RUST_LOG="error",
           DEDUP_TABLE="t", DELIVERY_STREAM="d", QUARANTINE_BUCKET="q")
samples = []
for _ in range(30):
    first_poll.clear()
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while "t" not in first_poll and time.perf_counter() - start < 10:
        time.sleep(0.0002)
    proc.kill(); proc.wait()
    if "t" in first_poll:
        samples.append((first_poll["t"] - start) * 1000)
server.shutdown()
size = os.path.getsize(binary)
samples.sort()
print(f"release binary: {size/1024/1024:.2f} MiB (symbols stripped by the release profile)")
print(f"process start -> first Runtime API poll over {len(samples)} starts: "
      f"median {statistics.median(samples):.1f} ms, p90 {samples[int(len(samples)*0.9)-1]:.1f} ms, max {samples[-1]:.1f} ms")
PY
