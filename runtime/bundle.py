"""The deployment bundle: model files plus ``manifest.json``, verified before anything runs.

A bundle is a directory written by ``edgebp export``. Its manifest says everything a runtime
needs (inputs and their order, rates, window, hop, delay, preprocessing, normalisation,
streaming state shapes) and holds the sha256 of every file. :func:`bundle_load` refuses a
tampered, broken or incomplete bundle with a one-line :class:`BundleError` naming the file and
the field, before any model runs:

- every path stays inside the bundle: a file name in ``files`` is relative, has no ``..``,
  no absolute path, no backslash; no path component is a symbolic link; every file is a
  regular file (checked with ``lstat`` before opening, opened ``O_NOFOLLOW | O_NONBLOCK`` and
  checked again with ``fstat``, so a FIFO, a device such as ``/dev/zero`` or a directory is
  refused without blocking);
- sizes are capped before anything is read (:data:`MANIFEST_MAX_BYTES`, :data:`ONNX_MAX_BYTES`,
  :data:`DATA_MAX_BYTES`), and the manifest's nesting depth (:data:`JSON_MAX_DEPTH`);
- the manifest has a full schema: every field typed, numbers finite and in range, unknown keys
  refused (provenance sections such as ``model.run_config`` or ``tensorrt`` are free-form but
  depth-limited); errors read ``manifest.json: streaming.chunk: must be an integer in
  1..1012, got -3``;
- every listed file matches its sha256 and is parsed: each ONNX model (protobuf parse and
  ``onnx.checker``; no external data; the graph's inputs agree with the manifest), the
  estimator (:meth:`edgebp.runtime.calibrated.EstimatorParams.from_dict` plus finite values),
  ``report.json`` (JSON), ``report.md`` (UTF-8).

The bytes that are hashed are the bytes that are parsed (one read per file). No pickles:
ONNX and JSON only.

A model that passed the parse and ``onnx.checker`` is recorded by the sha256 of its bytes,
with its graph inputs, in ``<cache>/onnx-checked.json`` (``$EDGEBP_CACHE``, default
``~/.cache/edgebp``; :func:`onnx_checked_path`): a later load of the same bytes (the hash is
always computed from what was read) takes the inputs from there instead of importing
``onnx`` again, about 0.1 s of an ``edgebp run`` start-up. Any other content, a record of
another :data:`ONNX_CHECKS_VERSION`, or no readable record means the full parse. What is
recorded is only "these exact bytes passed these checks"; ``EDGEBP_ONNX_CHECKED=0`` turns
the record off.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import logging
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = "edgebp-bundle/1"

#: Largest manifest read (bytes). The shipped manifests are 15-21 kB; most of a manifest is
#: the split (about 40 bytes per record name and 60 per identity entry), so 4 MiB holds
#: splits of tens of thousands of records and still bounds what a hostile file can make
#: the loader parse (a 1 GiB manifest used to load, 2.3 GB RSS).
MANIFEST_MAX_BYTES = 4 << 20
#: Largest ONNX model file (bytes). The shipped models are 54-105 kB; the largest zoo model
#: (MSCA-CSSC-UNet at its paper size) is about 220 MB in fp32; 512 MiB leaves room for it and
#: stays far below protobuf's hard 2 GiB limit. The whole file is read once (hash and parse).
ONNX_MAX_BYTES = 512 << 20
#: Largest other file (estimator.json, report.json, report.md; bytes). The shipped ones are
#: 1-43 kB.
DATA_MAX_BYTES = 16 << 20
#: Deepest nesting of JSON containers in a manifest or a JSON file. The deepest written by
#: export is 6 (validation.deployed.pointwise.NAME.FIELD); 32 leaves room and refuses depth
#: bombs before any code walks them recursively.
JSON_MAX_DEPTH = 32
#: Sizes of the geometry: a window of 2**20 samples is 2.3 h at 125 Hz (a few MiB per buffer).
MAX_SAMPLES = 1 << 20
MAX_STATE_ELEMENTS = 1 << 22
MAX_INPUTS = 16

#: file keys -> kind of file
#: trt_*: the TensorRT forms (export/tensorrt_form.py): window int8 (symmetric Q/DQ) and fp16;
#: stream_trt_*: the same for the streaming model (a "stream" prefix: checked as a streaming graph)
#: stream_pruned_*: the pruned streaming model (export --prune), its states in streaming.pruned_states
ONNX_KEYS = ("fp32", "int8", "pruned", "pruned_int8", "stream_fp32", "stream_int8", "trt_int8", "trt_fp16", "stream_trt_int8", "stream_trt_fp16",
             "stream_pruned_fp32", "stream_pruned_int8")
FILE_KINDS: dict[str, str] = {**{k: "onnx" for k in ONNX_KEYS}, "report_json": "json", "report_md": "text",
                              # calibration: calibration data kept for provenance (any format)
                              "calibration": "data",
                              # estimator: the calibrated per-beat estimator (edgebp.runtime.calibrated), JSON
                              "estimator": "estimator"}
FILE_KEYS = set(FILE_KINDS)
SUFFIX = {"onnx": ".onnx", "json": ".json", "estimator": ".json", "text": ".md"}
MODEL_KEYS = {"name", "preset", "params", "macs_per_window", "run_config"}
NORM_KEYS = {"abp_mean", "abp_std", "sbp_mean", "sbp_std", "dbp_mean", "dbp_std", "map_mean", "map_std", "n_train_beats"}
NORM_REQUIRED = ("abp_mean", "abp_std", "sbp_mean", "sbp_std", "dbp_mean", "dbp_std")
REFERENCE_KEYS = {"sbp_mean", "sbp_sd", "dbp_mean", "dbp_sd", "n_beats"}
STREAMING_KEYS = {"chunk", "states", "file_keys"}
#: optional: the pruned streaming model's states (same names, fewer channels), for the
#: "pruned"/"pruned-int8" entries of streaming.file_keys
STREAMING_OPTIONAL = ("pruned_states",)
STREAM_VARIANTS = ("fp32", "int8", "fp16", "pruned", "pruned-int8")
#: the streaming variants whose states are streaming.pruned_states
STREAM_PRUNED_VARIANTS = ("pruned", "pruned-int8")
#: train/val/test: record names; identity (optional, absent in older bundles): [{"record", "sha256"}]
#: with edgebp.record_identity.samples_sha256 of each, so evaluation knows them under any path
SPLIT_KEYS = {"train", "val", "test", "identity"}
VALIDATION_KEYS = {"accepted", "gates", "records", "split", "int8_delta_mae", "deployed"}
# blocking: False for a gate whose failure removed an optional artefact (a TensorRT form) instead of
# rejecting the bundle
GATE_KEYS = {"name", "figure", "value", "limit", "unit", "passed", "detail", "blocking"}
#: mmHg: arterial pressure means and spreads outside this are not a trained model's
PRESSURE_RANGE = (0.0, 300.0)

_HEX = re.compile(r"[0-9a-f]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def stream_states(manifest: dict, variant: str) -> list[dict]:
    """The state list (``name``, ``shape``) a streaming ``variant`` (a key of
    ``streaming.file_keys``) is fed: ``streaming.pruned_states`` for the pruned ones."""
    s = manifest["streaming"]
    return s["pruned_states"] if variant in STREAM_PRUNED_VARIANTS and "pruned_states" in s else s["states"]


class BundleError(ValueError):
    """A bundle that cannot be trusted: the message names the file (and field) and the problem."""


# --------------------------------------------------------------------------- files


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _open_checked(path: Path, cap: int | None, what: str, follow: bool = False):
    """An open binary file object for a regular file of at most ``cap`` bytes, or
    :class:`BundleError`.

    The type is checked before opening (``lstat``, or ``stat`` with ``follow``) and again on
    the open descriptor (``fstat``, same inode), and the open is ``O_NONBLOCK``: a FIFO or a
    device never blocks the caller, and a file swapped in between is noticed. ``O_NOFOLLOW``
    (unless ``follow``) refuses a symbolic link even if one appears after the check."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise BundleError(f"{what}: missing") from None
    except OSError as exc:
        raise BundleError(f"{what}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{what}: is {_kind_of(st.st_mode)}; only regular files are read")
    if cap is not None and st.st_size > cap:
        raise BundleError(f"{what}: {st.st_size} bytes is over the {cap} byte limit for this file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BundleError(f"{what}: is a symbolic link; only regular files are read") from None
        raise BundleError(f"{what}: cannot open ({exc.strerror or exc})") from None
    f = os.fdopen(fd, "rb")
    st2 = os.fstat(f.fileno())
    if not stat.S_ISREG(st2.st_mode) or (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
        f.close()
        raise BundleError(f"{what}: changed while being opened; only regular files are read")
    return f


def _open_regular(path: Path, cap: int, what: str, follow: bool = False) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes (see :func:`_open_checked`)."""
    with _open_checked(path, cap, what, follow) as f:
        try:
            data = f.read(cap + 1)
        except OSError as exc:
            raise BundleError(f"{what}: cannot read ({exc.strerror or exc})") from None
    if len(data) > cap:
        raise BundleError(f"{what}: over the {cap} byte limit for this file (it grew while being read)")
    return data


def file_sha256(path: str | Path) -> str:
    """sha256 of a regular file, read in 1 MiB blocks (symbolic links followed; a FIFO or a
    device is refused, never read)."""
    h = hashlib.sha256()
    with _open_checked(Path(path), None, str(path), follow=True) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rel_check(rel: Any, field_name: str, where: str) -> PurePosixPath:
    """A file name from the manifest as a path that can only point inside the bundle."""
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"{where}: {field_name}: must be a file name inside the bundle, got {_show(rel)}")
    if len(rel) > 255 or "\x00" in rel or "\\" in rel or ":" in rel:
        raise BundleError(f"{where}: {field_name}: {_show(rel)} is not a plain relative file name (no NUL, backslash, colon; at most 255 characters)")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("/"):
        raise BundleError(f"{where}: {field_name}: {_show(rel)} is an absolute path; bundle files must be inside the bundle")
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BundleError(f"{where}: {field_name}: {_show(rel)} leaves the bundle or is not normalised (no '..', '.' or empty components)")
    if parts[0] == "manifest.json":
        raise BundleError(f"{where}: {field_name}: the manifest cannot list itself")
    return p


def _bundle_file_read(root: Path, rel: str, cap: int, display: str) -> bytes:
    """Read ``root/rel`` (``rel`` already checked): no path component may be a symbolic link,
    the file must be regular and at most ``cap`` bytes."""
    parts = rel.split("/")
    cur = root
    for part in parts[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except OSError:
            raise BundleError(f"{display[: -len(rel) - 1] or display}: incomplete bundle, {rel} is missing") from None
        if not stat.S_ISDIR(st.st_mode):
            raise BundleError(f"{display}: {cur.name} is {_kind_of(st.st_mode)}, not a directory inside the bundle")
    try:
        return _open_regular(cur / parts[-1], cap, display)
    except BundleError as exc:
        if str(exc).endswith(": missing"):
            # "BUNDLE: incomplete bundle, REL is missing" (the wording tests and users know)
            raise BundleError(f"{display[: -len(rel) - 1] or display}: incomplete bundle, {rel} is missing") from None
        raise


# --------------------------------------------------------------------------- JSON


def _no_duplicates(pairs: list) -> dict:
    # two "files" tables in one object would mean different things to different readers
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _json_parse(data: bytes, what: str) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{what}: not UTF-8 text (byte {exc.start})") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{what}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise BundleError(f"{what}: nested deeper than {JSON_MAX_DEPTH} levels") from None
    except ValueError as exc:  # duplicate keys; an integer with more digits than Python converts
        raise BundleError(f"{what}: not valid JSON ({exc})") from None
    depth = _json_depth(obj)
    if depth > JSON_MAX_DEPTH:
        raise BundleError(f"{what}: nested {depth} levels deep, over the limit of {JSON_MAX_DEPTH}")
    return obj


def _json_depth(obj: Any) -> int:
    """Nesting depth of containers, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            if d > JSON_MAX_DEPTH:
                return d
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


# --------------------------------------------------------------------------- schema


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return f"an object ({len(v)} keys)"
    if isinstance(v, list):
        return f"a list ({len(v)} items)"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


class _Checker:
    """Field checks that raise :class:`BundleError` as ``WHERE: FIELD: must be ..., got ...``."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, fld: str, msg: str, v: Any = ...) -> None:
        got = "" if v is ... else f", got {_show(v)}"
        raise BundleError(f"{self.where}: {fld}: {msg}{got}")

    def obj(self, v: Any, fld: str, required: set | tuple = (), optional: set | tuple = (), closed: bool = True) -> dict:
        if not isinstance(v, dict):
            self.fail(fld, "must be an object", v)
        known = set(required) | set(optional)
        unknown = sorted(set(v) - known) if closed else []
        if unknown:
            self.fail(fld, f"unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(known))}")
        for k in required:
            if k not in v:
                self.fail(f"{fld}.{k}" if fld else k, "missing")
        return v

    def int(self, v: Any, fld: str, lo: int, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            self.fail(fld, f"must be an integer >= {lo}" if hi is None else f"must be an integer in {lo}..{hi}", v)
        return v

    def num(self, v: Any, fld: str, lo: float, hi: float, lo_open: bool = False) -> float:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
        if not ok:
            self.fail(fld, f"must be a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}]", v)
        return float(v)

    def opt_num(self, v: Any, fld: str) -> None:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            self.fail(fld, "must be a number or null", v)

    def str(self, v: Any, fld: str, max_len: int = 4096, nonempty: bool = True) -> str:
        if not isinstance(v, str) or (nonempty and not v) or len(v) > max_len:
            self.fail(fld, f"must be a {'non-empty ' if nonempty else ''}string of at most {max_len} characters", v)
        return v

    def bool(self, v: Any, fld: str) -> bool:
        if not isinstance(v, bool):
            self.fail(fld, "must be true or false", v)
        return v

    def choice(self, v: Any, fld: str, choices: tuple) -> Any:
        if not isinstance(v, str) or v not in choices:
            self.fail(fld, f"must be one of {', '.join(map(repr, choices))}", v)
        return v

    def list(self, v: Any, fld: str, max_len: int = 100_000, min_len: int = 0) -> list:
        if not isinstance(v, list) or not (min_len <= len(v) <= max_len):
            self.fail(fld, f"must be a list of {min_len}..{max_len} items", v)
        return v

    def str_list(self, v: Any, fld: str, max_len: int = 100_000, item_len: int = 4096) -> list:
        for i, x in enumerate(self.list(v, fld, max_len)):
            self.str(x, f"{fld}[{i}]", item_len)
        return v

    def opt_obj(self, v: Any, fld: str) -> None:
        if v is not None and not isinstance(v, dict):
            self.fail(fld, "must be an object or null", v)


MANIFEST_REQUIRED = ("schema", "model", "inputs", "fs", "window", "hop", "delay", "receptive_field", "causal", "output", "output_units",
                     "preprocessing", "normalisation", "reference", "files", "opset", "edgebp_version", "commands", "sha256")
MANIFEST_OPTIONAL = ("streaming", "calibration", "created", "validation", "tensorrt", "pruning", "split")
#: kept for callers that list the manifest's keys
MANIFEST_KEYS: dict[str, bool] = {**{k: True for k in MANIFEST_REQUIRED}, **{k: False for k in MANIFEST_OPTIONAL}}


def manifest_validate(m: Any, where: str) -> None:
    """Check the manifest's full schema (types, ranges, unknown keys, cross-references);
    raise :class:`BundleError` naming the first bad field: ``WHERE: FIELD: must be ..., got ...``.

    Examples
    --------
    >>> m = json.loads((Path(__file__).parents[1] / "edgebp/assets/default_bundle/manifest.json").read_text())  # doctest: +SKIP
    >>> manifest_validate(dict(m, delay=-3), "manifest.json")  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    edgebp.runtime.bundle.BundleError: manifest.json: delay: must be an integer in 0..1012, got -3
    """
    c = _Checker(where)
    if not isinstance(m, dict):
        raise BundleError(f"{where}: the manifest must be a JSON object, got {type(m).__name__}")
    depth = _json_depth(m)
    if depth > JSON_MAX_DEPTH:
        raise BundleError(f"{where}: nested {depth} levels deep, over the limit of {JSON_MAX_DEPTH}")
    unknown = sorted(set(m) - set(MANIFEST_KEYS))
    if unknown:
        raise BundleError(f"{where}: unknown manifest key(s) {', '.join(map(repr, unknown))}")
    for k in MANIFEST_REQUIRED:
        if k not in m:
            raise BundleError(f"{where}: {k}: missing")
    if m["schema"] != SCHEMA:
        c.fail("schema", f"must be {SCHEMA!r}", m["schema"])

    model = c.obj(m["model"], "model", ("name", "preset"), MODEL_KEYS - {"name", "preset"})
    c.str(model["name"], "model.name", 128)
    c.str(model["preset"], "model.preset", 128)
    for k in ("params", "macs_per_window"):
        if model.get(k) is not None:
            c.int(model[k], f"model.{k}", 0)
    c.opt_obj(model.get("run_config"), "model.run_config")

    inputs = c.list(m["inputs"], "inputs", MAX_INPUTS, 1)
    for i, name in enumerate(inputs):
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            c.fail(f"inputs[{i}]", "must be a channel name (letters, digits, _ . -)", name)
    if len(set(inputs)) != len(inputs):
        c.fail("inputs", "names must be unique", inputs)

    from edgebp.processing.chain import FS_RANGE

    c.num(m["fs"], "fs", FS_RANGE[0], FS_RANGE[1])
    window = c.int(m["window"], "window", 1, MAX_SAMPLES)
    c.int(m["hop"], "hop", 1, window)
    c.int(m["delay"], "delay", 0, window)
    c.int(m["receptive_field"], "receptive_field", 0, MAX_SAMPLES)
    c.bool(m["causal"], "causal")
    c.choice(m["output"], "output", ("waveform", "values"))
    c.choice(m["output_units"], "output_units", ("mmHg",))

    pre = c.obj(m["preprocessing"], "preprocessing", tuple(inputs), ())
    from edgebp.processing.chain import ChainConfig

    for name in inputs:
        entry = pre[name]
        if not isinstance(entry, dict):
            c.fail(f"preprocessing.{name}", "must be an object", entry)
        try:
            ChainConfig.from_dict(entry, where="ChainConfig")
        except (TypeError, ValueError) as exc:
            c.fail(f"preprocessing.{name}", str(exc).replace("ChainConfig.", "").replace("ChainConfig: ", ""))

    norm = c.obj(m["normalisation"], "normalisation", NORM_REQUIRED, NORM_KEYS - set(NORM_REQUIRED))
    for k in NORM_KEYS - {"n_train_beats"}:
        if k in norm:
            c.num(norm[k], f"normalisation.{k}", PRESSURE_RANGE[0], PRESSURE_RANGE[1], lo_open=k.endswith("_std"))
    if "n_train_beats" in norm:
        c.int(norm["n_train_beats"], "normalisation.n_train_beats", 0)
    ref = c.obj(m["reference"], "reference", (), REFERENCE_KEYS)
    for k in REFERENCE_KEYS - {"n_beats"}:
        if k in ref:
            c.num(ref[k], f"reference.{k}", PRESSURE_RANGE[0], PRESSURE_RANGE[1])
    if "n_beats" in ref:
        c.int(ref["n_beats"], "reference.n_beats", 0)

    files = c.obj(m["files"], "files", (), FILE_KEYS)
    for key, rel in files.items():
        _rel_check(rel, f"files.{key}", where)
        want = SUFFIX.get(FILE_KINDS[key])
        if want and not rel.lower().endswith(want):
            c.fail(f"files.{key}", f"must be a {want} file", rel)
        if rel.lower().endswith((".pkl", ".pickle", ".pt", ".pth")):
            c.fail(f"files.{key}", "is a pickle; bundles hold ONNX and JSON only", rel)
    if not any(FILE_KINDS[k] == "onnx" for k in files):
        c.fail("files", f"must list at least one ONNX model ({', '.join(ONNX_KEYS)})")

    streaming = m.get("streaming")
    if streaming is not None:
        s = c.obj(streaming, "streaming", tuple(STREAMING_KEYS), STREAMING_OPTIONAL)
        c.int(s["chunk"], "streaming.chunk", 1, window)

        def states_check(states: Any, where: str) -> list:
            names = []
            for i, st in enumerate(c.list(states, where, 1024)):
                fld = f"{where}[{i}]"
                c.obj(st, fld, ("name", "shape"), ())
                names.append(c.str(st["name"], f"{fld}.name", 256))
                shape = c.list(st["shape"], f"{fld}.shape", 8, 1)
                n = 1
                for j, d in enumerate(shape):
                    n *= c.int(d, f"{fld}.shape[{j}]", 1, MAX_STATE_ELEMENTS)
                if n > MAX_STATE_ELEMENTS:
                    c.fail(f"{fld}.shape", f"must hold at most {MAX_STATE_ELEMENTS} elements", shape)
            if len(set(names)) != len(names):
                c.fail(where, "state names must be unique")
            return names

        names = states_check(s["states"], "streaming.states")
        if "pruned_states" in s and states_check(s["pruned_states"], "streaming.pruned_states") != names:
            c.fail("streaming.pruned_states", "must name the same states as streaming.states, in the same order")
        fk = c.obj(s["file_keys"], "streaming.file_keys", (), STREAM_VARIANTS)
        if not fk:
            c.fail("streaming.file_keys", "must name at least one streaming model")
        for variant, key in fk.items():
            if not isinstance(key, str) or key not in files or FILE_KINDS.get(key) != "onnx":
                c.fail(f"streaming.file_keys.{variant}", "must be the key of an ONNX model in files", key)
            if variant in STREAM_PRUNED_VARIANTS and "pruned_states" not in s:
                c.fail(f"streaming.file_keys.{variant}", "a pruned streaming model needs streaming.pruned_states")

    c.opt_obj(m.get("calibration"), "calibration")
    c.opt_obj(m.get("tensorrt"), "tensorrt")
    c.opt_obj(m.get("pruning"), "pruning")
    c.int(m["opset"], "opset", 1, 64)
    c.str(m["edgebp_version"], "edgebp_version", 64)
    c.str_list(m["commands"], "commands", 1000, 65536)
    if m.get("created") is not None:
        created = c.str(m["created"], "created", 64)
        try:
            _dt.datetime.fromisoformat(created)
        except ValueError:
            c.fail("created", "must be an ISO 8601 time", created)

    val = m.get("validation")
    if val is not None:
        c.obj(val, "validation", (), VALIDATION_KEYS)
        if "accepted" in val:
            c.bool(val["accepted"], "validation.accepted")
        for i, g in enumerate(c.list(val.get("gates", []), "validation.gates", 1000)):
            fld = f"validation.gates[{i}]"
            c.obj(g, fld, ("name", "passed"), GATE_KEYS - {"name", "passed"})
            c.str(g["name"], f"{fld}.name", 256)
            c.bool(g["passed"], f"{fld}.passed")
            if "blocking" in g:
                c.bool(g["blocking"], f"{fld}.blocking")
            for k in ("value", "limit"):
                c.opt_num(g.get(k), f"{fld}.{k}")
            for k in ("figure", "unit", "detail"):
                if k in g:
                    c.str(g[k], f"{fld}.{k}", 4096, nonempty=False)
        if val.get("records") is not None:
            c.int(val["records"], "validation.records", 0)
        if val.get("split") is not None:
            c.str(val["split"], "validation.split", 64)
        c.opt_obj(val.get("int8_delta_mae"), "validation.int8_delta_mae")
        c.opt_obj(val.get("deployed"), "validation.deployed")

    split = m.get("split")
    if split is not None:
        c.obj(split, "split", (), SPLIT_KEYS)
        for key in ("train", "val", "test"):
            c.str_list(split.get(key, []), f"split.{key}", 1_000_000, 256)
        for i, e in enumerate(c.list(split.get("identity", []), "split.identity", 1_000_000)):
            c.obj(e, f"split.identity[{i}]", ("record", "sha256"), ())
            c.str(e["record"], f"split.identity[{i}].record", 256)
            h = e["sha256"]
            if not isinstance(h, str) or not (8 <= len(h) <= 64) or not _HEX.fullmatch(h):
                c.fail(f"split.identity[{i}].sha256", "must be 8..64 lowercase hex digits", h)

    sha = c.obj(m["sha256"], "sha256", (), (), closed=False)
    listed = set(files.values())
    for rel in sorted(listed - set(sha)):
        c.fail(f"sha256.{rel}", "missing: every file in files needs its sha256")
    for rel, digest in sha.items():
        if rel not in listed:
            c.fail(f"sha256.{rel}", "is not a file listed in files")
        if not isinstance(digest, str) or len(digest) != 64 or not _HEX.fullmatch(digest):
            c.fail(f"sha256.{rel}", "must be 64 lowercase hex digits", digest)


# --------------------------------------------------------------------------- parsing files


def _onnx_tensors_external(model) -> bool:
    """Whether any tensor of the model (initializers, Constant values, subgraphs) keeps its
    data in an external file: a bundle is self-contained, and an external ``location`` is a
    path the loader would follow."""
    import onnx

    graphs = [model.graph]
    while graphs:
        g = graphs.pop()
        tensors = list(g.initializer) + [s.values for s in g.sparse_initializer]
        for nd in g.node:
            for a in nd.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    tensors.append(a.t)
                elif a.type == onnx.AttributeProto.TENSORS:
                    tensors.extend(a.tensors)
                elif a.type == onnx.AttributeProto.GRAPH:
                    graphs.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    graphs.extend(a.graphs)
        if any(t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) for t in tensors):
            return True
    return False


def onnx_parse(data: bytes, what: str, allow_external: bool = False):
    """Parse ONNX bytes and run ``onnx.checker``; a :class:`BundleError` naming ``what`` when
    the file is empty, not a model, or (unless ``allow_external``) keeps data outside itself."""
    import onnx

    if not data:
        raise BundleError(f"{what}: empty file, not an ONNX model")
    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeWarning-free errors and friends
        raise BundleError(f"{what}: not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'cannot parse'})") from None
    external = _onnx_tensors_external(model)
    if external and not allow_external:
        raise BundleError(f"{what}: keeps tensor data in external files; a bundle's models must be self-contained")
    try:
        onnx.checker.check_model(model if not external else model.SerializeToString())
    except Exception as exc:  # noqa: BLE001 - onnx.checker.ValidationError and C++ errors
        first = (str(exc).strip().splitlines() or ["invalid"])[0]
        raise BundleError(f"{what}: not a valid ONNX model ({first[:200]})") from None
    if not len(model.graph.node) or not len(model.graph.output):
        raise BundleError(f"{what}: the ONNX graph has no nodes or no outputs")
    return model


def onnx_file_load(path: str | Path, allow_external: bool = True):
    """An ONNX model from a file given by the user (``edgebp budget model.onnx``): a regular
    file (symbolic links followed; a FIFO or device refused without blocking) of at most
    :data:`ONNX_MAX_BYTES`, parsed and checked. With external data the file is re-read by
    ``onnx.load`` so the data beside it is loaded (onnx refuses locations outside its folder)."""
    path = Path(path)
    data = _open_regular(path, ONNX_MAX_BYTES, str(path), follow=True)
    model = onnx_parse(data, str(path), allow_external=allow_external)
    if allow_external and _onnx_tensors_external(model):
        import onnx

        try:
            model = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001
            raise BundleError(f"{path}: cannot load its external data ({exc})") from None
    return model


def _graph_inputs(model) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _estimator_parse(data: bytes, what: str):
    """The bundle's :class:`EstimatorParams`, refusing what its own checks let through
    (non-finite numbers, wrong types)."""
    from edgebp.runtime.calibrated import TARGETS, EstimatorParams

    d = _json_parse(data, what)
    if not isinstance(d, dict):
        raise BundleError(f"{what}: must be a JSON object, got {type(d).__name__}")
    try:
        p = EstimatorParams.from_dict(d)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BundleError(f"{what}: not a valid estimator ({exc})") from None
    c = _Checker(what)
    c.num(p.window_s, "window_s", 0.0, 3600.0, lo_open=True)
    c.int(p.min_cal_beats, "min_cal_beats", 1, 100_000)
    c.num(p.max_delta, "max_delta", 0.0, 1e12, lo_open=True)
    for t in TARGETS:
        for i, v in enumerate(p.scale[t]):
            c.num(v, f"scale.{t}[{i}]", 0.0, 1e12, lo_open=True)
        for i, v in enumerate(p.weights[t]):
            c.num(v, f"weights.{t}[{i}]", -1e12, 1e12)
        c.num(p.alpha[t], f"alpha.{t}", 0.0, 1.0)
        c.num(p.tau[t], f"tau.{t}", 1.0, 1e6)
    return p


# --------------------------------------------------------------------------- the bundle


@dataclass
class Bundle:
    """A verified bundle: its directory and manifest (and, when loaded by :func:`bundle_load`,
    the parsed estimator)."""

    path: Path
    manifest: dict
    _estimator: Any = field(default=None, repr=False, compare=False)

    def file(self, key: str) -> Path:
        files = self.manifest["files"]
        if key not in files:
            raise BundleError(f"{self.path}: this bundle has no {key!r} model (it has: {', '.join(sorted(files))})")
        _rel_check(files[key], f"files.{key}", str(Path(self.path) / "manifest.json"))
        return Path(self.path) / files[key]

    def has(self, key: str) -> bool:
        return key in self.manifest["files"]

    def estimator(self):
        """The bundle's calibrated per-beat estimator (:class:`edgebp.runtime.calibrated.EstimatorParams`),
        or None when it carries none."""
        if not self.has("estimator"):
            return None
        if self._estimator is None:
            f = self.file("estimator")
            self._estimator = _estimator_parse(_bundle_file_read(Path(self.path), self.manifest["files"]["estimator"], DATA_MAX_BYTES, str(f)), str(f))
        return self._estimator

    @property
    def inputs(self) -> list[str]:
        return list(self.manifest["inputs"])


def bundle_load(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle directory: manifest schema, every file inside the bundle, regular and
    within its size cap, its sha256 (``verify``), and every file parsed.

    ``path`` may be ``"default"``: the bundle shipped inside the package. Any problem is a
    one-line :class:`BundleError` naming the file and field.

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
    try:
        st = os.stat(path)
    except OSError:
        raise BundleError(f"{path}: not a bundle (no such directory)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise BundleError(f"{path}: not a bundle (a bundle is a directory with a manifest.json)")
    # the directory the user named may itself be a link; everything inside it may not
    root = Path(os.path.realpath(path))
    mpath = path / "manifest.json"
    if not os.path.lexists(root / "manifest.json"):
        raise BundleError(f"{path}: not a bundle (no manifest.json)")
    m = _json_parse(_bundle_file_read(root, "manifest.json", MANIFEST_MAX_BYTES, str(mpath)), str(mpath))
    manifest_validate(m, str(mpath))
    _refuse_rejected(m, path)
    estimator = None
    onnx_by_rel: dict[str, list[str]] = {}  # the graph inputs of each model
    checked, new_checked = _onnx_checked_read(), {}
    kinds = {rel: FILE_KINDS[k] for k, rel in m["files"].items()}
    for rel, digest in m["sha256"].items():
        kind = kinds[rel]
        display = str(path / rel)
        data = _bundle_file_read(root, rel, ONNX_MAX_BYTES if kind == "onnx" else DATA_MAX_BYTES, display)
        actual = hashlib.sha256(data).hexdigest()
        if verify and actual != digest:
            raise BundleError(f"{display} does not match its sha256 in the manifest (tampered or corrupted)")
        if kind == "onnx":
            inputs = checked.get(actual)
            if inputs is None:
                inputs = _graph_inputs(onnx_parse(data, display))
                new_checked[actual] = inputs
            onnx_by_rel[rel] = inputs
        elif kind == "json":
            _json_parse(data, display)
        elif kind == "estimator":
            estimator = _estimator_parse(data, display)
        elif kind == "text":
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BundleError(f"{display}: not UTF-8 text (byte {exc.start})") from None
    _models_agree(m, onnx_by_rel, path, str(mpath))
    if new_checked:
        _onnx_checked_write({**checked, **new_checked})
    return Bundle(path=path, manifest=m, _estimator=estimator)


#: The version of :func:`onnx_parse`'s checks; a record written under another is not used.
ONNX_CHECKS_VERSION = 1
#: Most models the record keeps (the newest); each entry is a sha256 and a few input names.
ONNX_CHECKED_MAX = 512


def onnx_checked_path() -> Path | None:
    """``<cache>/onnx-checked.json``; None when ``EDGEBP_ONNX_CHECKED=0``."""
    if os.environ.get("EDGEBP_ONNX_CHECKED", "1").strip() == "0":
        return None
    from edgebp.paths import cache_root

    return cache_root() / "onnx-checked.json"


def _onnx_checked_read() -> dict[str, list[str]]:
    """The record: sha256 -> graph inputs of models that passed :func:`onnx_parse`; empty
    when absent, unreadable, of another version or malformed (then everything is parsed)."""
    p = onnx_checked_path()
    if p is None:
        return {}
    try:
        with open(p, "rb") as f:
            raw = f.read(4 << 20)
        d = json.loads(raw)
    except (OSError, ValueError):
        return {}
    if not isinstance(d, dict) or d.get("version") != ONNX_CHECKS_VERSION or not isinstance(d.get("models"), dict):
        return {}
    out = {}
    for k, v in d["models"].items():
        if isinstance(k, str) and re.fullmatch(r"[0-9a-f]{64}", k) and isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[k] = v
    return out


def _onnx_checked_write(models: dict[str, list[str]]) -> None:
    """Replace the record atomically; a cache that cannot be written is left alone (the
    next load parses again)."""
    p = onnx_checked_path()
    if p is None:
        return
    keep = dict(list(models.items())[-ONNX_CHECKED_MAX:])
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": ONNX_CHECKS_VERSION, "models": keep}))
        os.replace(tmp, p)
    except OSError as exc:
        log.debug("onnx-checked record not written (%s): %s", p, exc)


def _models_agree(m: dict, models: dict, path: Path, where: str) -> None:
    """Each model's graph inputs are what the manifest says the runtime feeds it: one signal
    input for a window model; the signal plus every ``streaming.states`` name for a
    streaming one (so a valid ONNX file swapped in with a fixed-up hash is still refused)."""
    stream_keys = set((m.get("streaming") or {}).get("file_keys", {}).values())
    states = [s["name"] for s in (m.get("streaming") or {}).get("states", [])]
    for key, rel in m["files"].items():
        if FILE_KINDS[key] != "onnx":
            continue
        names = models[rel]
        if key in stream_keys or key.startswith("stream"):
            missing = [s for s in states if s not in names]
            if key in stream_keys and (missing or len(names) != len(states) + 1):
                raise BundleError(f"{path / rel}: graph inputs {names} do not match the manifest's streaming.states "
                                  f"(signal + {len(states)} states{'; missing ' + ', '.join(missing) if missing else ''})")
        elif len(names) != 1:
            raise BundleError(f"{path / rel}: a window model must have one input, its graph has {len(names)} ({', '.join(names)})")


def _refuse_rejected(m: dict, path: Path) -> None:
    """A bundle whose export validation failed a gate never runs, even if someone renamed
    ``manifest.rejected.json`` to ``manifest.json``. Manifests written before the gates
    existed (no ``accepted``) load as before."""
    val = m.get("validation") or {}
    # a failed gate of a TensorRT form that the export then removed (listed as not shipped and
    # absent from files) is not a rejection; "blocking": false alone proves nothing
    dropped = [k for k in ((m.get("tensorrt") or {}).get("not_shipped") or {}) if k not in (m.get("files") or {})]

    def _dropped(g: dict) -> bool:
        n = str(g.get("name", ""))
        return g.get("blocking") is False and any(n.startswith(f"{k}_") for k in dropped) or (
            g.get("blocking") is False and n == "trt_form_rule_check" and bool(dropped))

    failed = [g for g in (val.get("gates") or []) if isinstance(g, dict) and g.get("passed") is False and not _dropped(g)]
    if val.get("accepted") is False or failed:
        what = "; ".join(f"gate {g.get('name')} failed ({g.get('value')} > {g.get('limit')})" for g in failed) or "validation.accepted is false"
        raise BundleError(f"{path}: export rejected this bundle: {what}; re-export it, or loosen the limit explicitly at export")


def bundle_write_manifest(path: Path, manifest: dict) -> Path:
    """Hash every file listed in ``manifest['files']`` and write ``manifest.json``."""
    manifest = dict(manifest)
    for key, rel in manifest["files"].items():
        _rel_check(rel, f"files.{key}", str(path / "manifest.json"))
    manifest["sha256"] = {rel: file_sha256(path / rel) for rel in sorted(set(manifest["files"].values()))}
    manifest_validate(manifest, str(path / "manifest.json"))
    out = path / "manifest.json"
    out.write_text(json.dumps(manifest, indent=2, sort_keys=False))
    return out
