"""Fails when the workspace's declared rust-version is lower than what the code
needs: the highest rust-version any locked dependency declares (cargo would
refuse to build on an older toolchain), or the let chains our code uses (1.88).
clippy's incompatible_msrv lint checks the standard library APIs against it.
Usage: check-msrv.py (from the repository root; needs cargo)"""
import json
import subprocess
import sys

# Language features the code uses that are newer than any API check would see.
LANGUAGE_FLOOR = ((1, 88, 0), "let chains")


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--locked"], text=True))
members = set(meta["workspace_members"])
declared = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(declared) != 1 or None in declared:
    sys.exit(f"every workspace member must take rust-version from the workspace; got {declared}")
ours = version(declared.pop())
needs = [(version(p["rust_version"]), f'{p["name"]} {p["version"]}')
         for p in meta["packages"] if p["id"] not in members and p.get("rust_version")]
needs.append(LANGUAGE_FLOOR)
highest, who = max(needs)
if ours < highest:
    sys.exit(f"rust-version {'.'.join(map(str, ours))} is too low: {who} needs "
             f"{'.'.join(map(str, highest))}")
print(f"rust-version {'.'.join(map(str, ours))} covers every dependency "
      f"(highest: {who}, {'.'.join(map(str, highest))})")
