"""Fails when the builds the scripts make stop sharing their dependencies'
artifacts with the test build: every third-party unit (crate, features, profile)
of `cargo build --workspace --bins` (scripts/demo.sh, scripts/tf-emulator-e2e.sh)
must be one `cargo test --workspace` builds too, or a fresh machine compiles
DataFusion twice. When it fails, turn the named crates' extra features on in every
build (cli/Cargo.toml's feature-unification dependencies).

Reads cargo's unit graph, which is unstable: RUSTC_BOOTSTRAP=1 lets the stable
toolchain print it; nothing is built. Usage: check-build-sharing.py (repo root)"""
import json
import os
import subprocess
import sys

ENV = dict(os.environ, RUSTC_BOOTSTRAP="1")


def units(args):
    out = subprocess.check_output(
        ["cargo", *args, "--locked", "--unit-graph", "-Z", "unstable-options"],
        env=ENV, text=True)
    found = set()
    for u in json.loads(out)["units"]:
        if u["pkg_id"].startswith("path+"):
            continue  # the workspace's own crates
        p = u["profile"]
        found.add((u["pkg_id"].rsplit("#", 1)[-1], u["target"]["name"], tuple(u["features"]),
                   u["mode"], p["opt_level"], str(p.get("debuginfo")), u.get("platform")))
    return found


test = units(["test", "--workspace", "--no-run"])
bins = units(["build", "--workspace", "--bins"])
extra = bins - test
if extra:
    for name, target, features, *_ in sorted(extra):
        print(f"  {name} ({target}) with features {list(features)}", file=sys.stderr)
    sys.exit(f"{len(extra)} dependency units of `cargo build --workspace --bins` are not in the test build")
print(f"build sharing: all {len(bins)} dependency units of `cargo build --workspace --bins` "
      f"are among the test build's {len(test)}")
