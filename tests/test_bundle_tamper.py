"""Tampered and broken bundles through the real CLI: every one refused, one line, no traceback.

Each case copies the shipped default bundle into ``tmp_path`` and breaks it one way: files
missing, wrong or fixed-up hashes, truncated / garbage / swapped ONNX, a manifest that is not
JSON, a list, huge (sparse 1 GiB), a depth bomb, with duplicate keys; paths out of the bundle
(``..``, absolute, ``/etc/passwd``), symbolic links in and out, a FIFO, ``/dev/zero``, a
directory; wrong types, negative, NaN and huge numbers per field; a broken estimator. Each goes
through ``edgebp.cli.main`` in-process (the entry point, with its own error handling) for
``edgebp run`` on a small log and for ``edgebp budget``, and must end with a non-zero exit, one
stderr line naming the file or field, no traceback, within :data:`TIMEOUT_S` (a SIGALRM guard
fails a hang instead of blocking the suite). The untouched copy runs (exit 0), so the checks
can fail.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from edgebp.cli import main
from edgebp.paths import ASSETS
from edgebp.runtime.bundle import MANIFEST_MAX_BYTES, ONNX_MAX_BYTES, bundle_load
from edgebp.runtime.protocol import StreamHeader, header_encode_text, samples_encode_text

DEFAULT = ASSETS / "default_bundle"
#: seconds one CLI call may take: a refused bundle is refused in about 0.1 s here (2 shared
#: cores); the untouched bundle's 4 s log runs in a few seconds. A hang is what this catches.
TIMEOUT_S = 20


# --------------------------------------------------------------------------- helpers


def _manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def _write(b: Path, m: dict, rehash: bool = True) -> None:
    """Write the manifest; with ``rehash`` the sha256 of every listed regular file is fixed
    up first, as an attacker who edits the bundle would (so only the other checks can refuse)."""
    if rehash:
        sha = {}
        files = m.get("files") if isinstance(m.get("files"), dict) else {}
        for rel in sorted(set(v for v in files.values() if isinstance(v, str) and v)):
            p = Path(rel) if os.path.isabs(rel) else b / rel
            try:
                sha[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "0" * 64
            except OSError:
                sha[rel] = "0" * 64
        m["sha256"] = sha
    (b / "manifest.json").write_text(json.dumps(m, indent=1))


def _edit(**fields):
    """A case that sets manifest fields (dotted names reach into objects) and fixes the hashes."""

    def apply(b: Path, tmp: Path) -> None:
        m = _manifest(b)
        for dotted, value in fields.items():
            keys = dotted.split("__")
            d = m
            for k in keys[:-1]:
                d = d[int(k)] if isinstance(d, list) else d[k]
            if value is _DELETE:
                del d[keys[-1]]
            else:
                d[int(keys[-1]) if isinstance(d, list) else keys[-1]] = value
        _write(b, m)

    return apply


_DELETE = object()


def _text_edit(old: str, new: str):
    def apply(b: Path, tmp: Path) -> None:
        t = (b / "manifest.json").read_text()
        assert old in t
        (b / "manifest.json").write_text(t.replace(old, new, 1))

    return apply


def _file(name: str, how):
    """A case that rewrites one file (``how(bytes) -> bytes``) and fixes its hash."""

    def apply(b: Path, tmp: Path) -> None:
        p = b / name
        p.write_bytes(how(p.read_bytes()))
        _write(b, _manifest(b))

    return apply


def _replace_with(name: str, make):
    """A case that replaces one file by something else (``make(path, tmp)``), hash untouched."""

    def apply(b: Path, tmp: Path) -> None:
        (b / name).unlink()
        make(b / name, tmp)

    return apply


def _outside_copy(tmp: Path, name: str) -> Path:
    out = tmp / "outside"
    out.mkdir(exist_ok=True)
    shutil.copy(DEFAULT / name, out / name)
    return out / name


def _path_case(key: str, rel_of):
    """files[key] set to a path built from the outside copy (``rel_of(b, outside_file)``), hash fixed."""

    def apply(b: Path, tmp: Path) -> None:
        m = _manifest(b)
        outside = _outside_copy(tmp, m["files"][key])
        m["files"][key] = rel_of(b, outside)
        _write(b, m)

    return apply


def _estimator_edit(fn):
    def apply(b: Path, tmp: Path) -> None:
        d = json.loads((b / "estimator.json").read_text())
        fn(d)
        (b / "estimator.json").write_text(json.dumps(d))
        _write(b, _manifest(b))

    return apply


def _json_nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


# name -> (apply(bundle, tmp), text the one-line error must contain)
CASES: dict[str, tuple] = {
    # files: missing, hashes, broken or swapped ONNX (hash fixed up: only parsing can refuse)
    "missing_model": (lambda b, t: (b / "model_int8.onnx").unlink(), "model_int8.onnx"),
    "missing_estimator": (lambda b, t: (b / "estimator.json").unlink(), "estimator.json"),
    "wrong_hash": (lambda b, t: (b / "model_fp32.onnx").write_bytes((b / "model_fp32.onnx").read_bytes()[:-1] + b"\0"), "model_fp32.onnx"),
    "truncated_onnx": (_file("model_stream_int8.onnx", lambda d: d[: len(d) // 2]), "model_stream_int8.onnx"),
    "truncated_unused_onnx": (_file("model_fp32.onnx", lambda d: d[: len(d) - 100]), "model_fp32.onnx"),
    "garbage_onnx": (_file("model_int8.onnx", lambda d: bytes(np.random.default_rng(0).integers(0, 256, len(d), dtype=np.uint8))), "model_int8.onnx"),
    "empty_onnx": (_file("model_fp32.onnx", lambda d: b""), "model_fp32.onnx"),
    "swapped_onnx": (_file("model_int8.onnx", lambda d: (DEFAULT / "model_stream_int8.onnx").read_bytes()), "model_int8.onnx"),
    "swapped_stream_onnx": (_file("model_stream_fp32.onnx", lambda d: (DEFAULT / "model_fp32.onnx").read_bytes()), "model_stream_fp32.onnx"),
    "onnx_oversize_sparse": (lambda b, t: _sparse(b / "model_fp32.onnx", ONNX_MAX_BYTES + 1), "model_fp32.onnx"),
    "pickle_named": (_edit(files__int8="model_int8.pkl"), "files.int8"),
    # the manifest itself
    "manifest_missing": (lambda b, t: (b / "manifest.json").unlink(), "manifest.json"),
    "manifest_not_json": (lambda b, t: (b / "manifest.json").write_text("{not json"), "manifest.json"),
    "manifest_empty": (lambda b, t: (b / "manifest.json").write_bytes(b""), "manifest.json"),
    "manifest_list": (lambda b, t: (b / "manifest.json").write_text("[1, 2]"), "manifest.json"),
    "manifest_string": (lambda b, t: (b / "manifest.json").write_text('"edgebp-bundle/1"'), "manifest.json"),
    "manifest_not_utf8": (lambda b, t: (b / "manifest.json").write_bytes(b"\xff\xfe{}"), "manifest.json"),
    "manifest_huge_sparse": (lambda b, t: _sparse(b / "manifest.json", 1 << 30), "manifest.json"),
    "manifest_over_cap": (lambda b, t: (b / "manifest.json").write_text(" " * (MANIFEST_MAX_BYTES + 1) + "{}"), "manifest.json"),
    "manifest_depth_bomb": (_text_edit('"pruning": null', '"pruning": ' + _json_nested(200_000)), "manifest.json"),
    "manifest_depth_100": (_text_edit('"pruning": null', '"pruning": {"a": ' + _json_nested(100) + "}"), "manifest.json"),
    "manifest_duplicate_key": (_text_edit('"files": {', '"files": {"fp32": "x.onnx"}, "files": {'), "manifest.json"),
    "manifest_huge_int": (_text_edit('"opset": 18', '"opset": ' + "9" * 5000), "manifest.json"),
    "manifest_is_dir": (lambda b, t: ((b / "manifest.json").unlink(), (b / "manifest.json").mkdir()), "manifest.json"),
    "manifest_symlink": (lambda b, t: (shutil.copy(b / "manifest.json", t / "m.json"), (b / "manifest.json").unlink(),
                                       (b / "manifest.json").symlink_to(t / "m.json")), "manifest.json"),
    "manifest_fifo": (lambda b, t: ((b / "manifest.json").unlink(), os.mkfifo(b / "manifest.json")), "manifest.json"),
    # paths that leave the bundle (hash of the outside file fixed up)
    "path_dotdot": (_path_case("int8", lambda b, o: os.path.relpath(o, b)), "files.int8"),
    "path_absolute": (_path_case("int8", lambda b, o: str(o)), "files.int8"),
    "path_etc_passwd": (_edit(files__report_md="/etc/passwd"), "files.report_md"),
    "path_dev_zero": (_edit(files__stream_int8="/dev/zero"), "files.stream_int8"),
    "path_dot_component": (_edit(files__int8="./model_int8.onnx"), "files.int8"),
    "path_inner_dotdot": (_edit(files__int8="x/../model_int8.onnx"), "files.int8"),
    "path_backslash": (_edit(files__int8="..\\model_int8.onnx"), "files.int8"),
    "path_empty": (_edit(files__int8=""), "files.int8"),
    "path_manifest_itself": (_edit(files__report_json="manifest.json"), "files.report_json"),
    # links and special files in place of a model (hash left as it was)
    "symlink_out": (_replace_with("model_int8.onnx", lambda p, t: p.symlink_to(_outside_copy(t, "model_int8.onnx"))), "model_int8.onnx"),
    "symlink_in": (lambda b, t: ((b / "model_int8.onnx").rename(b / "real_int8.onnx"), (b / "model_int8.onnx").symlink_to("real_int8.onnx")), "model_int8.onnx"),
    "symlink_dir_out": (lambda b, t: ((t / "d").mkdir(), shutil.copy(DEFAULT / "model_int8.onnx", t / "d"), (b / "sub").symlink_to(t / "d"),
                                      _edit(files__int8="sub/model_int8.onnx")(b, t)), "sub/model_int8.onnx"),
    "symlink_dev_zero": (_replace_with("model_stream_int8.onnx", lambda p, t: p.symlink_to("/dev/zero")), "model_stream_int8.onnx"),
    "symlink_dangling": (_replace_with("model_fp32.onnx", lambda p, t: p.symlink_to(t / "nothing.onnx")), "model_fp32.onnx"),
    "fifo_model": (_replace_with("model_stream_int8.onnx", lambda p, t: os.mkfifo(p)), "model_stream_int8.onnx"),
    "fifo_unused_model": (_replace_with("model_fp32.onnx", lambda p, t: os.mkfifo(p)), "model_fp32.onnx"),
    "dir_instead_of_model": (_replace_with("model_int8.onnx", lambda p, t: p.mkdir()), "model_int8.onnx"),
    # the estimator and the other files are parsed too
    "estimator_not_json": (_file("estimator.json", lambda d: b"{"), "estimator.json"),
    "estimator_list": (_file("estimator.json", lambda d: b"[]"), "estimator.json"),
    "estimator_nan_weight": (_estimator_edit(lambda d: d["weights"]["sbp"].__setitem__(0, float("nan"))), "weights.sbp[0]"),
    "estimator_alpha_type": (_estimator_edit(lambda d: d["alpha"].__setitem__("sbp", "high")), "estimator.json"),
    "estimator_scale_type": (_estimator_edit(lambda d: d.__setitem__("scale", 3)), "estimator.json"),
    "estimator_unknown_key": (_estimator_edit(lambda d: d.__setitem__("backdoor", 1)), "estimator.json"),
    "estimator_tau_inf": (_estimator_edit(lambda d: d["tau"].__setitem__("dbp", float("inf"))), "tau.dbp"),
    "report_json_broken": (_file("report.json", lambda d: d[:100]), "report.json"),
    "report_md_binary": (_file("report.md", lambda d: b"\xff\xfe\x00"), "report.md"),
    # the schema: keys, types, ranges
    "unknown_key": (_edit(backdoor=1), "backdoor"),
    "missing_fs": (_edit(fs=_DELETE), "fs"),
    "missing_files": (_edit(files=_DELETE), "files"),
    "schema_wrong": (_edit(schema="edgebp-bundle/99"), "schema"),
    "model_str": (_edit(model="edge-tcn"), "model"),
    "model_name_int": (_edit(model__name=5), "model.name"),
    "model_unknown": (_edit(model__weights="x"), "model"),
    "delay_negative": (_edit(delay=-3), "delay"),
    "delay_str": (_edit(delay="25"), "delay"),
    "delay_float": (_edit(delay=25.5), "delay"),
    "delay_bool": (_edit(delay=True), "delay"),
    "delay_huge": (_edit(delay=10**9), "delay"),
    "receptive_field_negative": (_edit(receptive_field=-1), "receptive_field"),
    "hop_zero": (_edit(hop=0), "hop"),
    "hop_over_window": (_edit(hop=10**6), "hop"),
    "window_zero": (_edit(window=0), "window"),
    "window_str": (_edit(window="1012"), "window"),
    "window_inf": (_text_edit('"window": 1012', '"window": 1e400'), "window"),
    "fs_nan": (_edit(fs=float("nan")), "fs"),
    "fs_zero": (_edit(fs=0), "fs"),
    "fs_negative": (_edit(fs=-125.0), "fs"),
    "fs_huge": (_edit(fs=1e308), "fs"),
    "fs_str": (_edit(fs="125"), "fs"),
    "causal_str": (_edit(causal="yes"), "causal"),
    "output_bogus": (_edit(output="bogus"), "output"),
    "inputs_str": (_edit(inputs="ppg"), "inputs"),
    "inputs_empty": (_edit(inputs=[]), "inputs"),
    "inputs_int": (_edit(inputs=[1, 2]), "inputs[0]"),
    "inputs_duplicate": (_edit(inputs=["ppg", "ppg"]), "inputs"),
    "inputs_no_preprocessing": (_edit(inputs=["ppg", "ecg", "abp"]), "preprocessing.abp"),
    "files_list": (_edit(files=["model_int8.onnx"]), "files"),
    "files_int_value": (_edit(files__int8=5), "files.int8"),
    "files_unknown_key": (_edit(files__bogus="model_int8.onnx"), "files"),
    "files_no_model": (_edit(files={"report_md": "report.md"}), "files"),
    "files_wrong_suffix": (_edit(files__estimator="report.md"), "files.estimator"),
    "streaming_list": (_edit(streaming=[25]), "streaming"),
    "streaming_chunk_zero": (_edit(streaming__chunk=0), "streaming.chunk"),
    "streaming_chunk_negative": (_edit(streaming__chunk=-25), "streaming.chunk"),
    "streaming_chunk_str": (_edit(streaming__chunk="25"), "streaming.chunk"),
    "streaming_states_str": (_edit(streaming__states="state_0"), "streaming.states"),
    "streaming_state_name_int": (_edit(streaming__states__0__name=1), "streaming.states[0].name"),
    "streaming_state_shape_negative": (_edit(streaming__states__0__shape=[1, -24, 2]), "streaming.states[0].shape[1]"),
    "streaming_state_shape_huge": (_edit(streaming__states__0__shape=[1, 4096, 4096]), "streaming.states[0].shape"),
    "streaming_state_renamed": (_edit(streaming__states__0__name="state_x"), "model_stream"),
    "streaming_file_key_bogus": (_edit(streaming__file_keys__int8="nope"), "streaming.file_keys.int8"),
    "streaming_unknown_key": (_edit(streaming__backdoor=1), "streaming"),
    "preprocessing_lowpass_negative": (_edit(preprocessing__ppg__lowpass_hz=-1.0), "preprocessing.ppg"),
    "preprocessing_norm_bogus": (_edit(preprocessing__ecg__norm="bogus"), "preprocessing.ecg"),
    "preprocessing_entry_list": (_edit(preprocessing__ppg=[1]), "preprocessing.ppg"),
    "preprocessing_missing_input": (_edit(preprocessing__ecg=_DELETE), "preprocessing.ecg"),
    "preprocessing_order_str": (_edit(preprocessing__ppg__filter_order="2"), "preprocessing.ppg"),
    "normalisation_std_zero": (_edit(normalisation__abp_std=0.0), "normalisation.abp_std"),
    "normalisation_std_nan": (_text_edit('"abp_std": 29.48495101928711', '"abp_std": NaN'), "normalisation.abp_std"),
    "normalisation_mean_huge": (_edit(normalisation__abp_mean=1e308), "normalisation.abp_mean"),
    "normalisation_str": (_edit(normalisation__sbp_mean="120"), "normalisation.sbp_mean"),
    "reference_neg_inf": (_text_edit('"dbp_sd": 17.564581342309133', '"dbp_sd": -Infinity'), "reference.dbp_sd"),
    "sha256_not_hex": (lambda b, t: (m := _manifest(b), m["sha256"].__setitem__("model_int8.onnx", "z" * 64), _write(b, m, rehash=False)), "sha256.model_int8.onnx"),
    "sha256_missing_entry": (lambda b, t: (m := _manifest(b), m["sha256"].pop("report.md"), _write(b, m, rehash=False)), "sha256.report.md"),
    "sha256_extra_entry": (lambda b, t: (m := _manifest(b), m["sha256"].__setitem__("../x", "0" * 64), _write(b, m, rehash=False)), "sha256"),
    "sha256_list": (lambda b, t: (m := _manifest(b), m.__setitem__("sha256", []), _write(b, m, rehash=False)), "sha256"),
    "opset_negative": (_edit(opset=-1), "opset"),
    "commands_str": (_edit(commands="rm -rf /"), "commands"),
    "created_not_a_time": (_edit(created="yesterday"), "created"),
    "validation_rejected": (_edit(validation={"accepted": False}), "rejected"),
    "validation_gates_str": (_edit(validation={"gates": ["x"]}), "validation.gates[0]"),
    "validation_unknown": (_edit(validation={"backdoor": 1}), "validation"),
    "split_train_str": (_edit(split__train="a170s"), "split.train"),
    "split_identity_bad_hash": (_edit(split__identity=[{"record": "a170s", "sha256": "not hex"}]), "split.identity[0].sha256"),
}


@pytest.fixture(scope="module")
def small_log(tmp_path_factory) -> Path:
    """4 s of a synthetic two-channel text log at 125 Hz (what `edgebp run` reads)."""
    fs, n = 125.0, 500
    t = np.arange(n) / fs
    ppg = 0.5 + 0.3 * np.sin(2 * np.pi * 1.2 * t)
    ecg = 0.1 * np.sin(2 * np.pi * 1.2 * t) + 0.9 * (np.mod(t, 1 / 1.2) < 0.02)
    gains = [2.0**-14, 2.0**-12]
    raw = np.stack([np.round(ppg / gains[0]), np.round(ecg / gains[1])], axis=1).astype(np.int64)
    h = StreamHeader(fs, ["ppg", "ecg"], ["NU", "mV"], [24, 24], gains, [0.0, 0.0], device="tamper-test")
    p = tmp_path_factory.mktemp("log") / "serial.log"
    p.write_bytes(header_encode_text(h) + samples_encode_text(np.arange(n) % 65536, raw))
    return p


class _Timeout(BaseException):
    """Not an Exception: main()'s last-line-of-defence handler must not turn a hang into a
    tidy one-line error."""


def _cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """``edgebp ARGS`` through the real entry point in this process: (exit code, stdout, stderr).
    A call that runs past TIMEOUT_S is interrupted by SIGALRM and fails the test (a hang)."""

    def on_alarm(signum, frame):
        raise _Timeout(f"edgebp {' '.join(args[:2])} ran past {TIMEOUT_S} s (hang)")

    monkeypatch.setattr(sys, "argv", ["edgebp", *args])
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    return code, out, err


def _bundle_copy(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    shutil.copytree(DEFAULT, b)
    return b


def _assert_refused(code: int, out: str, err: str, expect: str, what: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, f"{what}: accepted (exit 0); stderr: {err[-500:]}"
    # main() turns an unexpected exception into "Error: TypeError: ... (unexpected; ...)":
    # one line, but a crash all the same
    assert "Traceback" not in err + out and "(unexpected" not in err, f"{what}: traceback:\n{err[-2000:]}"
    assert len(lines) == 1, f"{what}: expected one error line, got {len(lines)}:\n{err[-2000:]}"
    assert lines[0].startswith("Error: ") and expect in lines[0], f"{what}: the error does not name {expect!r}: {lines[0]}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_bundle_is_refused_by_run_and_budget(case, tmp_path, small_log, capsys, monkeypatch):
    apply, expect = CASES[case]
    b = _bundle_copy(tmp_path)
    apply(b, tmp_path)
    code, out, err = _cli(["run", str(b), "--stream", str(small_log), "--out", str(tmp_path / "bp.csv")], capsys, monkeypatch)
    _assert_refused(code, out, err, expect, f"run {case}")
    code, out, err = _cli(["budget", str(b), "--mcu", "nrf52832"], capsys, monkeypatch)
    _assert_refused(code, out, err, expect, f"budget {case}")


def test_untouched_copy_runs_and_budgets(tmp_path, small_log, capsys, monkeypatch):
    """The control: the same copy, untouched, runs to the end and passes budget, so every
    refusal above is the tamper's doing."""
    b = _bundle_copy(tmp_path)
    code, out, err = _cli(["run", str(b), "--stream", str(small_log), "--out", str(tmp_path / "bp.csv")], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    assert (tmp_path / "bp.csv").stat().st_size > 0
    code, out, err = _cli(["budget", str(b), "--mcu", "nrf52832"], capsys, monkeypatch)
    assert code == 0 and "nrf52832" in out, err[-2000:]


def _onnx_plain(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / "m.onnx"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "garbage":
        p.write_bytes(b"\x08\x07not a model\xff\xff")
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "dev_zero":
        p.symlink_to("/dev/zero")
    elif kind == "dir":
        p.mkdir()
    return p


@pytest.mark.parametrize("kind", ["empty", "garbage", "fifo", "dev_zero", "dir"])
def test_budget_refuses_a_broken_plain_onnx(kind, tmp_path, capsys, monkeypatch):
    """``edgebp budget model.onnx``: an empty file used to pass on every MCU; a FIFO or
    /dev/zero must not block."""
    p = _onnx_plain(tmp_path, kind)
    code, out, err = _cli(["budget", str(p), "--model-fs", "125", "--hop", "25", "--window", "25", "--mcu", "all"], capsys, monkeypatch)
    _assert_refused(code, out, err, "m.onnx", f"budget {kind}")


@pytest.mark.parametrize("name", ["default_bundle", "lowlatency_bundle"])
def test_shipped_bundles_load(name):
    b = bundle_load(ASSETS / name)
    assert b.inputs and b.has("int8")
    if b.has("estimator"):
        est = b.estimator()
        assert all(math.isfinite(w) for t in ("sbp", "dbp", "map") for w in est.weights[t])
