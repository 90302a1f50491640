"""The deployment bundle: model files plus ``manifest.json``, verified before anything runs.

A bundle is a directory written by ``edgebp export``. Its manifest says everything a runtime
needs (inputs and their order, rates, window, hop, delay, preprocessing, normalisation,
streaming state shapes) and holds the sha256 of every file; :func:`bundle_load` checks the
schema (unknown keys rejected), that every listed file exists, and every hash, and refuses a
tampered or incomplete bundle with a message naming the problem. No pickles: ONNX and JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = "edgebp-bundle/1"

# key -> (required, type); nested dicts are checked by their own tables below
MANIFEST_KEYS: dict[str, tuple[bool, type | tuple]] = {
    "schema": (True, str),
    "model": (True, dict),
    "inputs": (True, list),
    "fs": (True, (int, float)),
    "window": (True, int),
    "hop": (True, int),
    "delay": (True, int),
    "receptive_field": (True, int),
    "causal": (True, bool),
    "output": (True, str),
    "output_units": (True, str),
    "preprocessing": (True, dict),
    "normalisation": (True, dict),
    "reference": (True, dict),
    "streaming": (False, (dict, type(None))),
    "files": (True, dict),
    "calibration": (False, (dict, type(None))),
    "opset": (True, int),
    "edgebp_version": (True, str),
    "commands": (True, list),
    "created": (False, str),
    "validation": (False, (dict, type(None))),
    "tensorrt": (False, (dict, type(None))),
    "pruning": (False, (dict, type(None))),
    "split": (False, (dict, type(None))),
    "sha256": (True, dict),
}
MODEL_KEYS = {"name", "preset", "params", "macs_per_window", "run_config"}
NORM_KEYS = {"abp_mean", "abp_std", "sbp_mean", "sbp_std", "dbp_mean", "dbp_std", "map_mean", "map_std", "n_train_beats"}
REFERENCE_KEYS = {"sbp_mean", "sbp_sd", "dbp_mean", "dbp_sd", "n_beats"}
STREAMING_KEYS = {"chunk", "states", "file_keys"}
#: train/val/test: record names; identity (optional, absent in older bundles): [{"record", "sha256"}]
#: with edgebp.record_identity.samples_sha256 of each, so evaluation knows them under any path
SPLIT_KEYS = {"train", "val", "test", "identity"}
FILE_KEYS = {"fp32", "int8", "pruned", "pruned_int8", "stream_fp32", "stream_int8", "trt_int8", "trt_fp16", "report_md", "report_json", "calibration",
             "estimator"}  # estimator: the calibrated per-beat estimator (edgebp.runtime.calibrated), JSON


class BundleError(ValueError):
    """A bundle that cannot be trusted: the message names the file and the problem."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_validate(m: Any, where: str) -> None:
    """Check the manifest's schema; raise :class:`BundleError` naming the first problem."""
    if not isinstance(m, dict):
        raise BundleError(f"{where}: manifest must be a JSON object")
    unknown = sorted(set(m) - set(MANIFEST_KEYS))
    if unknown:
        raise BundleError(f"{where}: unknown manifest key(s) {', '.join(unknown)}")
    for key, (required, typ) in MANIFEST_KEYS.items():
        if key not in m:
            if required:
                raise BundleError(f"{where}: manifest is missing {key!r}")
            continue
        if not isinstance(m[key], typ) or (typ is int and isinstance(m[key], bool)):
            raise BundleError(f"{where}: manifest field {key!r} has the wrong type ({type(m[key]).__name__})")
    if m["schema"] != SCHEMA:
        raise BundleError(f"{where}: schema {m['schema']!r} is not {SCHEMA!r}")
    for key, allowed in (("model", MODEL_KEYS), ("normalisation", NORM_KEYS), ("reference", REFERENCE_KEYS), ("files", FILE_KEYS)):
        bad = sorted(set(m[key]) - allowed)
        if bad:
            raise BundleError(f"{where}: unknown key(s) in {key!r}: {', '.join(bad)}")
    if m.get("split"):
        bad = sorted(set(m["split"]) - SPLIT_KEYS)
        if bad:
            raise BundleError(f"{where}: unknown key(s) in 'split': {', '.join(bad)}")
        for key in ("train", "val", "test"):
            v = m["split"].get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise BundleError(f"{where}: manifest field 'split.{key}' must be a list of record names")
        ident = m["split"].get("identity", [])
        if not isinstance(ident, list) or not all(
                isinstance(e, dict) and set(e) == {"record", "sha256"} and isinstance(e["record"], str) and isinstance(e["sha256"], str)
                for e in ident):
            raise BundleError(f"{where}: manifest field 'split.identity' must be a list of {{\"record\": NAME, \"sha256\": HEX}}")
    if m.get("streaming"):
        bad = sorted(set(m["streaming"]) - STREAMING_KEYS)
        if bad:
            raise BundleError(f"{where}: unknown key(s) in 'streaming': {', '.join(bad)}")
    if m["output"] not in ("waveform", "values"):
        raise BundleError(f"{where}: output must be 'waveform' or 'values', not {m['output']!r}")
    if not (1 <= m["hop"] <= max(m["window"], 1)):
        raise BundleError(f"{where}: hop {m['hop']} must be within 1..window ({m['window']})")
    for name in m["inputs"]:
        if name not in m["preprocessing"]:
            raise BundleError(f"{where}: input {name!r} has no preprocessing entry")


@dataclass
class Bundle:
    """A verified bundle: its directory and manifest."""

    path: Path
    manifest: dict

    def file(self, key: str) -> Path:
        files = self.manifest["files"]
        if key not in files:
            raise BundleError(f"{self.path}: this bundle has no {key!r} model (it has: {', '.join(sorted(files))})")
        return self.path / files[key]

    def has(self, key: str) -> bool:
        return key in self.manifest["files"]

    def estimator(self):
        """The bundle's calibrated per-beat estimator (:class:`edgebp.runtime.calibrated.EstimatorParams`),
        or None when it carries none."""
        if not self.has("estimator"):
            return None
        from edgebp.runtime.calibrated import estimator_load

        try:
            return estimator_load(self.file("estimator"))
        except ValueError as exc:
            raise BundleError(str(exc)) from None

    @property
    def inputs(self) -> list[str]:
        return list(self.manifest["inputs"])


def bundle_load(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle directory, checking schema, files and hashes.

    ``path`` may be ``"default"``: the bundle shipped inside the package.

    Examples
    --------
    >>> b = bundle_load("default")  # doctest: +SKIP
    >>> b.inputs  # doctest: +SKIP
    ['ppg', 'ecg']
    """
    if str(path) == "default":
        from edgebp.paths import ASSETS

        path = ASSETS / "default_bundle"
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.exists():
        raise BundleError(f"{path}: not a bundle (no manifest.json)")
    try:
        m = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{mpath}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    manifest_validate(m, str(mpath))
    _refuse_rejected(m, path)
    listed = set(m["files"].values())
    hashed = set(m["sha256"])
    missing_hash = sorted(listed - hashed)
    if missing_hash:
        raise BundleError(f"{path}: file(s) without a sha256 in the manifest: {', '.join(missing_hash)}")
    for rel, digest in m["sha256"].items():
        f = path / rel
        if not f.exists():
            raise BundleError(f"{path}: incomplete bundle, {rel} is missing")
        if f.suffix in (".pkl", ".pickle", ".pt", ".pth"):
            raise BundleError(f"{path}: {rel} is a pickle; bundles hold ONNX and JSON only")
        if verify and file_sha256(f) != digest:
            raise BundleError(f"{path}: {rel} does not match its sha256 in the manifest (tampered or corrupted)")
    return Bundle(path=path, manifest=m)


def _refuse_rejected(m: dict, path: Path) -> None:
    """A bundle whose export validation failed a gate never runs, even if someone renamed
    ``manifest.rejected.json`` to ``manifest.json``. Manifests written before the gates
    existed (no ``accepted``) load as before."""
    val = m.get("validation") or {}
    failed = [g for g in (val.get("gates") or []) if isinstance(g, dict) and g.get("passed") is False]
    if val.get("accepted") is False or failed:
        what = "; ".join(f"gate {g.get('name')} failed ({g.get('value')} > {g.get('limit')})" for g in failed) or "validation.accepted is false"
        raise BundleError(f"{path}: export rejected this bundle: {what}; re-export it, or loosen the limit explicitly at export")


def bundle_write_manifest(path: Path, manifest: dict) -> Path:
    """Hash every file listed in ``manifest['files']`` and write ``manifest.json``."""
    manifest = dict(manifest)
    manifest["sha256"] = {rel: file_sha256(path / rel) for rel in sorted(set(manifest["files"].values()))}
    manifest_validate(manifest, str(path / "manifest.json"))
    out = path / "manifest.json"
    out.write_text(json.dumps(manifest, indent=2, sort_keys=False))
    return out
