#!/usr/bin/env python3
"""Builds KPL aggregated records with an independent implementation, the
`aws-kinesis-agg` package (pinned in requirements-dev.txt), for the Rust
de-aggregator's tests (shared/core/tests/kpl.rs).

    python3 scripts/gen-kpl-fixtures.py            # (re)writes shared/core/tests/fixtures/kpl/
    python3 scripts/gen-kpl-fixtures.py --check    # fails if the committed fixtures differ

Each fixture is one aggregate, `<name>.bin`, exactly as a producer would put it
on the stream (magic, protobuf, MD5). `manifest.json` lists, per fixture, the
user records the aggregate must split into, in order, each as
`[partition key, explicit hash key or null, data in base64]`. Everything is deterministic (fixed
seeds, no clock), so regenerating gives the same bytes.
"""

import argparse
import base64
import io
import json
import random
import sys
import types
from pathlib import Path

# aws-kinesis-agg 1.2.3 imports `six` without declaring it; it only needs these.
try:
    import six  # noqa: F401
except ImportError:
    _six = types.ModuleType("six")
    _six.string_types = (str,)
    _six.iteritems = lambda d: iter(d.items())
    _six.StringIO = io.StringIO
    sys.modules["six"] = _six

try:
    import aws_kinesis_agg
    from aws_kinesis_agg.aggregator import RecordAggregator
    from aws_kinesis_agg.deaggregator import deaggregate_records
except ImportError:
    sys.exit("aws-kinesis-agg is not installed: pip install -r requirements-dev.txt")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "shared" / "core" / "tests" / "fixtures" / "kpl"
# Event timestamps sit just before the Rust tests' clock (NOW_MS = 1_763_900_000_000).
BASE_TS = 1_763_800_000_000
ITEMS = ["person", "car", "bicycle", "bus", "truck", "dog", "backpack"]


def event(oid, item=None, loc=None, camera=None, ts=None):
    return json.dumps(
        {
            "detection_oid": oid,
            "video_camera_oid": camera if camera is not None else 1000 + oid % 40,
            "geographical_location_oid": loc if loc is not None else oid % 55 + 1,
            "item_name": item if item is not None else ITEMS[oid % len(ITEMS)],
            "timestamp_detected": ts if ts is not None else BASE_TS + oid * 1000,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


def ehk(rng):
    """An explicit hash key: a decimal 128-bit integer, as Kinesis takes it."""
    return str(rng.randrange(0, 2**128))


def fixtures():
    rng = random.Random(20251123)
    out = {}

    out["single"] = (
        "one user record holding one valid event",
        [("camera-17", None, event(17))],
    )

    out["events-100"] = (
        "100 valid events, 8 partition keys (a shared key table)",
        [(f"camera-{oid % 8}", None, event(oid)) for oid in range(1, 101)],
    )

    out["explicit-hash-keys"] = (
        "12 events with explicit hash keys, some keys repeated",
        [
            (f"pk-{i % 5}", hk, event(200 + i))
            for i, hk in enumerate([ehk(rng) for _ in range(4)] * 3)
        ],
    )

    out["mixed-hash-keys"] = (
        "explicit hash keys on some user records only",
        [
            ("pk-a", None, event(300)),
            ("pk-b", "170141183460469231731687303715884105728", event(301)),
            ("pk-a", None, event(302)),
            ("pk-c", "0", event(303)),
        ],
    )

    unicode_items = ["人", "自転車 🚲", "Straßenbahn", "café crème", "ไก่", "🐕‍🦺"]
    out["unicode"] = (
        "unicode partition keys and item names",
        [
            (f"カメラ-{i}-ü", None, event(400 + i, item=name))
            for i, name in enumerate(unicode_items)
        ],
    )

    tiny = []
    for i in range(1500):
        n = rng.randrange(0, 6)
        tiny.append((f"k{i % 37}", None, bytes(rng.randrange(256) for _ in range(n))))
    out["many-small"] = ("1,500 tiny binary user records, some empty", tiny)

    out["batch"] = (
        "for the batch tests: valid events, an in-aggregate re-send, bad records",
        [
            ("cam-1", None, event(501)),
            ("cam-2", None, event(502)),
            ("cam-1", None, event(501)),  # the same event again
            ("cam-3", None, b"not json"),
            ("cam-2", None, event(503, loc=999)),  # unknown location: delivered
            ("cam-4", None, event(504, ts=1_700_000)),  # seconds, not ms: quarantined
            ("cam-1", None, event(505)),
        ],
    )

    big = "x" * 1000
    out["large"] = (
        "16 events with 1,000-character item names (about 16 KB)",
        [(f"big-{i % 3}", None, event(600 + i, item=f"{big}{i}")) for i in range(16)],
    )
    return out


def aggregate(records):
    agg = RecordAggregator()
    for pk, hk, data in records:
        full = agg.add_user_record(pk, data, hk)
        if full is not None:
            raise SystemExit("fixture does not fit in one aggregate")
    _, _, blob = agg.clear_and_get().get_contents()
    assert blob.startswith(aws_kinesis_agg.MAGIC)
    # The package's own de-aggregator agrees on keys and data (a sanity check; it
    # fills in explicit hash keys where none were given, so those are not compared).
    event = {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "sequenceNumber": "1",
            "approximateArrivalTimestamp": 0,
            "partitionKey": "agg",
            "data": base64.b64encode(blob).decode("ascii"),
        }
    }
    split = [r["kinesis"] for r in deaggregate_records([event])]
    got = [(r["partitionKey"], base64.b64decode(r["data"])) for r in split]
    if got != [(pk, data) for pk, _, data in records]:
        raise SystemExit("aws-kinesis-agg does not read back its own aggregate")
    return blob


def compact(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render():
    files = {}
    parts = []
    for name, (description, records) in fixtures().items():
        files[f"{name}.bin"] = aggregate(records)
        rows = ",\n".join(
            "   " + compact([pk, hk, base64.b64encode(data).decode("ascii")]) for pk, hk, data in records
        )
        parts.append(
            f'  {{"file":{compact(name + ".bin")},"description":{compact(description)},"records":[\n{rows}\n  ]}}'
        )
    # One user record per line: small diffs, still plain JSON.
    manifest = (
        '{"generator":"scripts/gen-kpl-fixtures.py","package":"aws-kinesis-agg==1.2.3",\n'
        ' "record_fields":["partition_key","explicit_hash_key","data_base64"],\n'
        ' "fixtures":[\n' + ",\n".join(parts) + "\n]}\n"
    )
    json.loads(manifest)
    files["manifest.json"] = manifest.encode("utf-8")
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed fixtures, write nothing")
    args = ap.parse_args()
    files = render()
    if args.check:
        stale = [n for n, b in files.items() if not (OUT / n).is_file() or (OUT / n).read_bytes() != b]
        if stale:
            sys.exit(f"KPL fixtures are stale: {', '.join(stale)}; run scripts/gen-kpl-fixtures.py")
        print(f"{len(files)} KPL fixture files up to date")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for n, b in files.items():
        (OUT / n).write_bytes(b)
    total = sum(len(b) for b in files.values())
    print(f"wrote {len(files)} files ({total} bytes) to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
