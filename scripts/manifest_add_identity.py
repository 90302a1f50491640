#!/usr/bin/env python
"""Add record identities (name + samples sha256) to a bundle manifest's split.

Bundles exported before edgebp recorded record identities list their split by name only.
This reads every train/val/test record of the manifest's split from the data it was trained
on, computes :func:`edgebp.record_identity.samples_sha256` of each, and writes the manifest
back with ``split.identity``. Nothing else changes: the model files and their sha256 table are
not touched (the table covers the model and report files, not the manifest).

Usage:
    .venv/bin/python scripts/manifest_add_identity.py                      # the shipped default bundle
    .venv/bin/python scripts/manifest_add_identity.py BUNDLE_DIR --data /path/to/challenge2015
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgebp.io import ReadError, read_record
from edgebp.paths import ASSETS, data_path_resolve
from edgebp.record_identity import SPLITS, record_identity, split_with_identity
from edgebp.runtime.bundle import BundleError, bundle_load, manifest_validate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="?", default=str(ASSETS / "default_bundle"), help="bundle directory (default: the shipped one)")
    ap.add_argument("--data", default=None, help="the records' folder (default: the manifest's run_config data, resolved as edgebp does)")
    a = ap.parse_args(argv)

    mpath = Path(a.bundle) / "manifest.json"
    try:
        text = mpath.read_text()
        m = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"{mpath}: {exc}", file=sys.stderr)
        return 2
    split = m.get("split") or {}
    names = [n for k in SPLITS for n in split.get(k, [])]
    if not names:
        print(f"{mpath}: the manifest has no split to add identities to", file=sys.stderr)
        return 2
    ref = a.data or (m["model"].get("run_config") or {}).get("data")
    if not ref or ref == "synth":
        print(f"{mpath}: give --data (run_config.data is {ref!r})", file=sys.stderr)
        return 2
    try:
        data = data_path_resolve(ref)
    except FileNotFoundError as exc:
        print(f"{exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    known = {}
    for n in names:
        try:
            ident = record_identity(read_record(data / n))
        except ReadError as exc:
            print(f"{mpath}: split record {n}: {exc}", file=sys.stderr)
            return 2
        if ident.record != n:
            print(f"{data / n}: the file names record {ident.record!r}, the split {n!r}", file=sys.stderr)
            return 2
        known[n] = ident.sha256
    m["split"] = split_with_identity(split, known)
    manifest_validate(m, str(mpath))
    mpath.write_text(json.dumps(m, indent=2) + ("\n" if text.endswith("\n") else ""))
    try:
        bundle_load(a.bundle)
    except BundleError as exc:
        print(f"{mpath}: written, but the bundle no longer loads: {exc}", file=sys.stderr)
        return 1
    print(f"{mpath}: {len(known)} record identities from {data} ({', '.join(f'{k} {len(split.get(k, []))}' for k in SPLITS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
