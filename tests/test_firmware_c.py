"""The generated firmware (edgebp firmware generate) built with the host's gcc, against the
runtime on a real record: the int8 model, the preprocessor (float32, its biquads in
float-float) and the API end to end.

ONNX Runtime is the reference in two forms: the QDQ graph run as written
(``ORT_DISABLE_ALL``: every Q/DQ node, float Conv/Add/Concat) and as ``edgebp run`` runs it
(``ORT_ENABLE_ALL``: fused QLinearConv/QLinearAdd/QLinearConcat). The equality criteria are
asserted against both; see docs/firmware.md for why the second was not a reference on an
AVX2 machine while the int8 weights had 8 bits (its u8s8 kernel saturates).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-fno-math-errno"]


@pytest.fixture(scope="module")
def gcc() -> str:
    path = shutil.which("gcc")
    if path is None:
        pytest.skip("gcc not found on PATH: the generated C cannot be built on this machine")
    return path


@pytest.fixture(scope="module")
def device(validation_minute):
    """One minute of the record (conftest.validation_minute) as the device sends it."""
    return validation_minute


@pytest.fixture(scope="module")
def firmware(gcc, device, tmp_path_factory) -> Path:
    from edgebp.firmware_sim.cgen import firmware_generate

    out = tmp_path_factory.mktemp("firmware")
    firmware_generate("default", out, device_fs=device[1])
    subprocess.run([gcc, *CFLAGS, "-o", str(out / "edgebp_harness"), "edgebp_harness.c", "edgebp.c", "edgebp_model.c", "-lm"],
                   cwd=out, check=True, capture_output=True, text=True)
    return out


def _ref_session(bundle, level: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(bundle.file("stream_int8")), so, providers=["CPUExecutionProvider"])


def _runtime_stream(bundle, device, level: str = "ORT_DISABLE_ALL"):
    """The runtime on the record, its ONNX Runtime session at ``level``; returns the ABP it
    emitted and every model call's input and output (the model's own preprocessed input)."""
    from edgebp.firmware_sim.cgen_check import runtime_stream

    r = runtime_stream(bundle, *device, level)
    return r["abp"], r["x"], r["y"]


@pytest.fixture(scope="module")
def runtime_ref(bundle, device):
    """The runtime on the record with ONNX Runtime running the QDQ graph as written (once)."""
    return _runtime_stream(bundle, device)


def _harness(firmware: Path, mode: str, data: np.ndarray, tmp: Path, dtype, *extra: str) -> np.ndarray:
    src, dst = tmp / f"{mode}.in", tmp / f"{mode}.out"
    np.ascontiguousarray(data, "<f4").tofile(src)
    subprocess.run([str(firmware / "edgebp_harness"), mode, str(src), str(dst), *extra], check=True, capture_output=True)
    return np.fromfile(dst, dtype)


def _out_q(bundle):
    import onnx
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(bundle.file("stream_int8"))).graph.initializer}
    return np.float32(init["y_scale"]), int(init["y_zero_point"])


def test_generated_c_compiles_cleanly_and_allocates_nothing(firmware, gcc):
    """-Wall -Wextra -Werror plus -pedantic on every file; no malloc/calloc/realloc/free."""
    for f in ("edgebp.c", "edgebp_model.c", "edgebp_harness.c"):
        r = subprocess.run([gcc, *CFLAGS, "-pedantic", "-c", f, "-o", "/dev/null"], cwd=firmware, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
    for f in ("edgebp.c", "edgebp_model.c"):
        text = (firmware / f).read_text()
        for fn in ("malloc(", "calloc(", "realloc(", "free("):
            assert fn not in text, f"{f} calls {fn}"
    sizes = json.loads((firmware / "sizes.json").read_text())
    assert sizes["arena"] > 0 and sizes["state"] == 6048  # 24 channels x (2+2+4+4+...+64+64) samples


def test_c_model_equals_ort_on_a_real_record(firmware, bundle, runtime_ref, tmp_path):
    """The runtime's own model inputs (one minute, 300 chunks of 25, state carried) through the
    C model and through ONNX Runtime running the QDQ graph as written: the output codes agree
    within one int8 step and the ABP within 0.5 mmHg at the 99th percentile (measured: every
    code equal, see docs/firmware.md)."""
    _, feeds, y_ort = runtime_ref
    scale, zp = _out_q(bundle)
    q_ort = np.rint(y_ort / scale).astype(np.int64) + zp
    q_c = _harness(firmware, "model", feeds, tmp_path, np.uint8).astype(np.int64)
    assert q_c.shape == q_ort.shape == (feeds.shape[0] * bundle.manifest["streaming"]["chunk"],)
    d = np.abs(q_c - q_ort)
    assert d.max() <= 1, f"{int((d > 1).sum())} of {d.size} codes differ by more than one step (max {int(d.max())})"
    abp = d * float(scale) * bundle.manifest["normalisation"]["abp_std"]
    assert np.percentile(abp, 99) <= 0.5
    # the test can fail: one input code moved moves outputs (the model is not constant)
    moved = feeds.copy()
    moved[10, 0, 5] += 0.5
    q_moved = _harness(firmware, "model", moved, tmp_path, np.uint8).astype(np.int64)
    assert (q_moved != q_c).any()


def test_c_model_equals_edgebp_run_as_deployed(firmware, bundle, device, tmp_path):
    """The same minute through the runtime with the session ``edgebp run`` opens
    (``ORT_ENABLE_ALL``: fused QLinearConv/QLinearAdd/QLinearConcat) and through the C model on
    the runtime's own model inputs: every output code within one step and the ABP within 0.5
    mmHg at p99 (measured with the 7-bit weights the CPU int8 form now has: every code equal;
    with the former 8-bit weights ORT's saturating u8s8 kernels put 5,355 of 7,500 codes off,
    up to 9, on an AVX2 machine)."""
    _, feeds, y_run = _runtime_stream(bundle, device, "ORT_ENABLE_ALL")
    scale, zp = _out_q(bundle)
    q_run = np.rint(y_run / scale).astype(np.int64) + zp
    q_c = _harness(firmware, "model", feeds, tmp_path, np.uint8).astype(np.int64)
    d = np.abs(q_c - q_run)
    assert d.max() <= 1, f"{int((d > 1).sum())} of {d.size} codes differ by more than one step (max {int(d.max())})"
    assert np.percentile(d * float(scale) * bundle.manifest["normalisation"]["abp_std"], 99) <= 0.5


def test_c_model_state_load_round_trips_ort_state(firmware, bundle, runtime_ref, tmp_path):
    """Teacher-forced: each step starts from ORT's own carried state (edgebp_model_load_state),
    so a step's kernels are compared alone; every code equal to ORT's QDQ execution."""
    _, feeds, _ = runtime_ref
    sess = _ref_session(bundle, "ORT_DISABLE_ALL")
    names = [s["name"] for s in bundle.manifest["streaming"]["states"]]
    st = [np.zeros(s["shape"], np.float32) for s in bundle.manifest["streaming"]["states"]]
    rows, ys = [], []
    for x in feeds[:60]:
        rows.append(np.concatenate([s.ravel() for s in st] + [x.ravel()]))
        r = sess.run(None, {"x": x[None]} | dict(zip(names, st)))
        ys.append(r[0].reshape(-1))
        st = r[1:]
    scale, zp = _out_q(bundle)
    q_c = _harness(firmware, "model_tf", np.stack(rows), tmp_path, np.uint8).astype(np.int64)
    np.testing.assert_array_equal(q_c, np.rint(np.concatenate(ys) / scale).astype(np.int64) + zp)


def test_c_preprocessor_matches_the_runtime_chain(firmware, bundle, device, tmp_path):
    """The C chain (float32, the biquads' recursion in float-float) against the runtime's
    float64 chain (edgebp.processing) on the record at its own 250 Hz (resampled to 125 Hz).
    Past the model's warm-up (the receptive field) the largest difference measured is 1.3e-5
    (normalised units; 6.2e-5 with the biquads in float32); the bound, 3e-5, is 1/2300 of the
    model's input quantisation step (0.07) and fails if the biquads fall back to float32."""
    from edgebp.processing.chain import ChainConfig, Preprocessor

    vals, fs = device
    m = bundle.manifest
    ref = []
    for j, c in enumerate(bundle.inputs):
        pre = Preprocessor(ChainConfig.from_dict({**m["preprocessing"][c], "fs_in": fs, "fs_out": m["fs"]}))
        ref.append(pre.process(vals[:, j], pre.init_state())[0])
    ref = np.stack(ref)
    got = _harness(firmware, "pre", vals, tmp_path, np.float32).reshape(-1, len(bundle.inputs)).T
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
    rf = int(m["receptive_field"])
    err = np.abs(got[:, rf:] - ref[:, rf:])
    assert err.max() <= 3e-5, f"max |C - runtime| past warm-up {err.max():.3g}"
    assert err.max() > 0  # float32 against float64: identical would mean the test compared nothing


def test_c_stream_end_to_end_against_the_runtime(firmware, bundle, device, runtime_ref, tmp_path):
    """edgebp_push/edgebp_pop on the device samples (50 a packet) against the runtime's ABP.
    Where the runtime claims a value the firmware claims one, and the issue's criterion holds:
    within 0.5 mmHg at p99. Measured on this minute: every value equal within the float32
    rounding of the ABP (max 4.7e-6 mmHg); an input moved across an int8 rounding edge by the
    preprocessing would move an output by one step (0.67 mmHg). Bounds: p99 0.5 mmHg, max
    within one step, mean within 0.01 mmHg."""
    abp_rt, _, _ = runtime_ref
    abp_c = _harness(firmware, "stream", device[0], tmp_path, np.float32, "50").astype(np.float64)
    n = len(abp_rt)
    assert len(abp_c) >= n
    abp_c = abp_c[:n]
    assert not (np.isfinite(abp_rt) & ~np.isfinite(abp_c)).any()
    assert np.isfinite(abp_c).sum() == np.isfinite(abp_rt).sum()  # the same warm-up, no gaps in this minute
    both = np.isfinite(abp_rt) & np.isfinite(abp_c)
    d = np.abs(abp_c[both] - abp_rt[both])
    scale, _ = _out_q(bundle)
    step = float(scale) * bundle.manifest["normalisation"]["abp_std"]
    assert np.percentile(d, 99) <= 0.5
    assert d.max() <= step * 1.001
    assert d.mean() <= 0.01
    # a different packet size gives the same bits: the firmware's output does not depend on it
    again = _harness(firmware, "stream", device[0], tmp_path, np.float32, "7")
    np.testing.assert_array_equal(again[:n], abp_c.astype(np.float32))


def test_scale_change_fixed_point_form_is_the_table_exactly(firmware):
    """The firmware replaces a change-of-scale table Q(DQ(q)) by min(max((q m + r) >> s, lo), hi)
    only where that equals the table on every code (int32 arithmetic); the default bundle's 12
    tables all have the form, so no 256-byte table is left in flash."""
    from edgebp.firmware_sim.cgen import QParams, affine_of_table, requant_lut

    rng = np.random.default_rng(0)
    found = 0
    for _ in range(6):  # scale ratios as a Concat's rescales have them (a search that fails is slow)
        a = QParams(float(rng.uniform(0.005, 0.1)), int(rng.integers(0, 256)), False)
        b = QParams(float(a.scale * rng.uniform(0.7, 1.3)), int(rng.integers(0, 256)), False)
        c = QParams(float(b.scale * rng.uniform(0.7, 1.3)), int(rng.integers(0, 256)), False)
        for tbl in (requant_lut(a, b), requant_lut(b, c)[requant_lut(a, b)]):
            aff = affine_of_table(tbl)
            if aff is None:
                continue
            m, r, sh, lo, hi = aff
            q = np.arange(256, dtype=np.int64)
            v = q * m + r
            assert np.abs(v).max() < 2**31 and np.array_equal(np.clip(v >> sh, lo, hi), tbl)
            found += 1
    assert found > 0  # (6 of these 12 have the form; the default bundle's 12 all have it)
    text = (firmware / "edgebp_model.c").read_text()
    assert text.count("    affine_u8(") == 12 and "lut_u8(" not in text
    assert "smlad %[a0]" in text and "#if defined(__ARM_FEATURE_DSP)" in text  # the Cortex-M4 path


def test_unsupported_graphs_and_bundles_get_one_line_naming_op_and_node(bundle, tmp_path):
    import onnx

    from edgebp.firmware_sim.cgen import UnsupportedModel, lower_qdq

    model = onnx.load(str(bundle.file("stream_int8")))
    names = [s["name"] for s in bundle.manifest["streaming"]["states"]]
    lower_qdq(model, 25, names)  # the shipped graph lowers
    node = next(n for n in model.graph.node if n.op_type == "Add" and n.name == "/Add")
    node.op_type = "Mul"
    with pytest.raises(UnsupportedModel, match=r"^unsupported op Mul at node /Add$"):
        lower_qdq(model, 25, names)
    # a window model: the bundle without its streaming model
    from click.testing import CliRunner

    from edgebp.firmware_sim.cgen_cli import firmware_group

    win = tmp_path / "window_bundle"
    shutil.copytree(bundle.path, win)
    man = json.loads((win / "manifest.json").read_text())
    man.pop("streaming")
    for key in ("stream_fp32", "stream_int8"):
        fname = man["files"].pop(key)
        man.get("sha256", {}).pop(fname, None)
        (win / fname).unlink()
    (win / "manifest.json").write_text(json.dumps(man))
    r = CliRunner().invoke(firmware_group, ["generate", str(win), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "window model" in lines[0], r.output


def test_cli_generate_writes_the_files(tmp_path):
    from click.testing import CliRunner

    from edgebp.firmware_sim.cgen_cli import firmware_group

    r = CliRunner().invoke(firmware_group, ["generate", "default", "--out", str(tmp_path), "--device-fs", "250", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    for f in ("edgebp.h", "edgebp.c", "edgebp_model.h", "edgebp_model.c", "edgebp_harness.c", "Makefile", "sizes.json"):
        assert f in res["files"] and (tmp_path / f).stat().st_size > 0
    assert "#define EDGEBP_DEVICE_FS 250.0f" in (tmp_path / "edgebp.h").read_text()


# ------------------------------------------------------------------ Cortex-M4F on QEMU
def _arm_missing() -> str | None:
    from edgebp.firmware_sim.cgen import arm_tools_missing

    why = arm_tools_missing()
    if why is None and shutil.which("qemu-system-arm") is None:
        why = "qemu-system-arm not found on PATH (Debian: apt-get install qemu-system-arm; or `make firmware-tools`)"
    return why


@pytest.fixture(scope="module")
def arm_firmware(firmware) -> Path:
    why = _arm_missing()
    if why is not None:
        pytest.skip(f"the Cortex-M4F build cannot run here: {why}")
    r = subprocess.run(["make", "-s", "-C", str(firmware), "arm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr.lower(), r.stderr
    return firmware


def _qemu(fw: Path, *args: str) -> None:
    cfg = "enable=on,target=native,arg=edgebp_harness," + ",".join(f"arg={a}" for a in args)
    r = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor", "none",
                        "-serial", "none", "-semihosting-config", cfg, "-kernel", str(fw / "edgebp_harness.elf")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cortex_m4_on_qemu_gives_the_host_build_bit_for_bit(arm_firmware, device, tmp_path):
    """The same test vectors (the record's device samples, and the model's own chunks) through
    the Cortex-M4F build (hard float, fpv4-sp-d16) on QEMU's mps2-an386 and through the host
    build: the same bytes out, for the preprocessor, the model and the whole stream."""
    vals = np.ascontiguousarray(device[0], "<f4")
    vals.tofile(tmp_path / "v.bin")
    for mode, extra in (("pre", ()), ("stream", ("50",))):
        subprocess.run([str(arm_firmware / "edgebp_harness"), mode, str(tmp_path / "v.bin"), str(tmp_path / f"{mode}.host"), *extra],
                       check=True, capture_output=True)
        _qemu(arm_firmware, mode, str(tmp_path / "v.bin"), str(tmp_path / f"{mode}.arm"), *extra)
        host, arm = (tmp_path / f"{mode}.host").read_bytes(), (tmp_path / f"{mode}.arm").read_bytes()
        assert len(host) > 0 and host == arm, f"{mode}: {len(host)} host bytes, {len(arm)} Cortex-M4F bytes, not equal"
    # the model alone on its preprocessed chunks (the host build's own preprocessor output)
    pre = np.fromfile(tmp_path / "pre.host", np.float32).reshape(-1, 2)
    n = pre.shape[0] // 25 * 25
    chunks = np.ascontiguousarray(pre[:n].reshape(-1, 25, 2).transpose(0, 2, 1), "<f4")
    chunks.tofile(tmp_path / "x.bin")
    subprocess.run([str(arm_firmware / "edgebp_harness"), "model", str(tmp_path / "x.bin"), str(tmp_path / "y.host")],
                   check=True, capture_output=True)
    _qemu(arm_firmware, "model", str(tmp_path / "x.bin"), str(tmp_path / "y.arm"))
    assert (tmp_path / "y.host").read_bytes() == (tmp_path / "y.arm").read_bytes()


def test_cortex_m4_sizes_and_stack_are_measured(arm_firmware):
    """arm-none-eabi-size of the firmware's own objects and the deepest API call chain's stack
    (-fstack-usage along -fcallgraph-info): real figures, and the issue's goals for the default
    bundle (32 kB flash, 16 kB RAM) met (measured: 31,304 B flash; 14,836 B static RAM + 352 B
    stack). The firmware calls no library code but memcpy/memset: no soft-float double
    routines (about 2 kB of libgcc, not counted in the objects' sizes). Instructions per second
    counted by QEMU (measured 6.40 M/s: over the 5 % duty goal, see docs/firmware.md; asserted
    only to lie between one and twenty per MAC)."""
    from edgebp.firmware_sim.cgen import firmware_measure

    m = firmware_measure(arm_firmware)
    assert set(m["objects"]) == {"arm/edgebp.o", "arm/edgebp_model.o"}
    sizes = json.loads((arm_firmware / "sizes.json").read_text())
    # the static buffers the generator sized are in .bss (state + arena at least)
    assert m["bss"] >= sizes["state"] + sizes["arena"]
    assert m["text"] >= sizes["weights"]
    assert m["stack_chain"][0].startswith("edgebp_") and m["stack_peak_bytes"] > 0
    assert set(m["stack_not_counted"]) <= {"memcpy", "memset"}, m["stack_not_counted"]
    assert m["flash_bytes"] <= 32 * 1024
    assert m["ram_bytes"] <= 16 * 1024
    ins = m["instructions"]
    assert abs(ins["instructions_per_tick"] - 40.0) < 0.4  # mps2-an386's 25 MHz SysTick at 1 ns per instruction
    macs_per_s = sizes["macs_per_step"] * 125.0 / 25  # model rate / chunk
    assert macs_per_s <= ins["instructions_per_s"] <= 20 * macs_per_s


def test_budget_shows_the_measured_firmware_beside_its_estimates(arm_firmware):
    from click.testing import CliRunner

    from edgebp.firmware_sim.budget_cli import budget_command

    r = CliRunner().invoke(budget_command, ["default", "--mcu", "nrf52832", "--firmware", str(arm_firmware), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    m = out["firmware_measured"]
    assert m["flash_bytes"] == m["text"] + m["data"] and m["ram_bytes"] == m["data"] + m["bss"] + m["stack_peak_bytes"]
    assert out["budget"]["weight_bytes"] > 0  # the estimate stays beside it
    d = m["duty"]["nrf52832"]
    assert d["clock_hz"] == 64e6 and d["duty_range"][0] < d["duty"] < d["duty_range"][1]
    r = CliRunner().invoke(budget_command, ["default", "--mcu", "nrf52832", "--firmware", str(arm_firmware)])
    assert r.exit_code == 0 and "measured, Cortex-M4F build" in r.output and f".bss {m['bss']}" in r.output
    assert "M instructions per second" in r.output and "nrf52832 64 MHz" in r.output
