"""Start-up of the streaming runtime: no scipy, no torch, numba kernels from the cache, and
the numpy filter designs that replace scipy.signal on the runtime path (golden tests: scipy is
imported here, in the tests, never by the runtime)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal as ss

from edgebp.processing.filters import butter_sos, filter_design, group_delay_at, sosfilt_zi, StreamFilter
from edgebp.processing.normalize import RunningNorm
from edgebp.processing.stream_resample import (
    PASS_EDGE, STOP_EDGE, STOPBAND_DB, StreamResampler, _design, firwin_kaiser, kaiserord, resample_ratio,
)

# Imports the runtime in a fresh interpreter (numba's JIT: EDGEBP_KERNELS=jit), then runs one
# kernel, and prints what got loaded before and after, as JSON.
_IMPORT_PROBE = """
import json, sys
import numpy as np
import edgebp.runtime.run, edgebp.runtime.engine, edgebp.runtime.cli
mods = list(sys.modules)
from edgebp.processing.quality import InputGuard
g = InputGuard(250.0, motion=True)
g.process(np.ones(10), g.init_state())  # the first kernel call: numba comes in here
after = list(sys.modules)
import numba.np.arraymath as am
have_blas = am._HAVE_BLAS
import scipy.signal  # the mask is gone: offline code can still import scipy afterwards
print(json.dumps({"scipy": [m for m in after if m.split(".")[0] == "scipy"],
                  "torch": [m for m in after if m.split(".")[0] == "torch"],
                  "numba_at_import": "numba" in mods, "numba": "numba" in after, "have_blas": have_blas, "n": len(mods)}))
"""

# Runs `edgebp run` in-process and, at exit, writes the modules it loaded and the numba cache
# statistics of every edgebp kernel to the file given as the first argument.
_RUN_WRAPPER = """
import atexit, json, sys
out = sys.argv.pop(1)
def _dump():
    mods = list(sys.modules)  # before anything this probe imports
    kernels = {}
    if "numba" in mods:  # numba's JIT ran (the ahead-of-time kernels load no numba)
        from numba.core.dispatcher import Dispatcher
        for name, mod in list(sys.modules.items()):
            if name.startswith("edgebp") and mod is not None:
                for attr, obj in vars(mod).items():
                    if isinstance(obj, Dispatcher) and obj.__module__ == name:
                        st = obj.stats
                        kernels[f"{name}.{attr}"] = {"cached": type(obj._cache).__name__ != "NullCache",
                                                     "hits": sum(st.cache_hits.values()),
                                                     "misses": sum(st.cache_misses.values())}
    with open(out, "w") as f:
        json.dump({"scipy": [m for m in mods if m.split(".")[0] == "scipy"],
                   "torch": [m for m in mods if m.split(".")[0] == "torch"], "numba": "numba" in mods, "kernels": kernels}, f)
atexit.register(_dump)
sys.argv[0] = "edgebp"
from edgebp.cli import main
main()
"""


def _env(kernels: str) -> dict:
    return {**os.environ, "EDGEBP_KERNELS": kernels}


def test_runtime_imports_no_scipy_and_no_torch():
    p = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=300, env=_env("jit"))
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["scipy"] == [], f"the runtime imports scipy: {got['scipy'][:10]}"
    assert got["torch"] == []
    # numba is imported at the first kernel call, not with the modules
    assert not got["numba_at_import"] and got["numba"]
    # numba's own view of BLAS is what it would have found with scipy installed
    assert got["have_blas"] is True


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory):
    """A 12 s ECG+PPG serial log from the device simulator."""
    d = tmp_path_factory.mktemp("startup-log")
    log = d / "serial.log"
    p = subprocess.run(
        [sys.executable, "-m", "edgebp", "sim", "--source", "synth:3", "--minutes", "0.2", "--out", str(log),
         "--truth", str(d / "truth.csv"), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stderr
    return log


def _run_logged(log, dump, kernels: str = "jit"):
    p = subprocess.run([sys.executable, "-c", _RUN_WRAPPER, str(dump), "run", "--stream", str(log)],
                       capture_output=True, text=True, timeout=300, env=_env(kernels))
    assert p.returncode == 0, p.stderr
    return p, json.loads(dump.read_text())


def test_edgebp_run_loads_no_scipy_no_torch_and_kernels_from_cache(tiny_log, tmp_path):
    """numba's JIT (EDGEBP_KERNELS=jit): the kernels come from numba's cache."""
    _run_logged(tiny_log, tmp_path / "first.json")  # fills the numba cache if it is cold
    p, got = _run_logged(tiny_log, tmp_path / "second.json")
    lines = p.stdout.strip().splitlines()
    assert lines[0].startswith("time,sbp,dbp") and len(lines) > 3  # beats came out
    assert got["scipy"] == [], f"`edgebp run` imported scipy: {got['scipy'][:10]}"
    assert got["torch"] == []
    kernels = got["kernels"]
    assert len(kernels) >= 10
    assert all(k["cached"] for k in kernels.values()), [n for n, k in kernels.items() if not k["cached"]]
    used = {n: k for n, k in kernels.items() if k["hits"] + k["misses"] > 0}
    # the streaming kernels ran, and on the second run every one came from the cache
    for name in ("filters._sosfilt_hold_kernel", "stream_resample._resample_kernel",
                 "normalize._running_norm_kernel", "beats._track_block"):
        assert f"edgebp.processing.{name}" in used
    assert {n: k["misses"] for n, k in used.items() if k["misses"]} == {}


# ------------------------------------------------------------------------------------------
# Golden tests: the numpy designs equal scipy.signal's, bit for bit
# ------------------------------------------------------------------------------------------

def _design_grid():
    for fs in (50.0, 100.0, 125.0, 128.0, 250.0, 256.0, 360.0, 500.0, 1000.0):
        for order in range(1, 9):
            for cut in (0.1, 0.5, 1.0, 8.0, 15.0, 40.0, 0.45 * fs):
                if cut < fs / 2:
                    yield fs, order, "lowpass", cut
                    yield fs, order, "highpass", cut
            for lo, hi in ((0.5, 8.0), (0.5, 40.0), (0.1, 0.2), (1.0, 0.45 * fs), (5.0, 15.0)):
                if hi < fs / 2:
                    yield fs, order, "bandpass", [lo, hi]


GRID = list(_design_grid())


def test_butterworth_sos_equals_scipy_bit_for_bit():
    assert len(GRID) > 1000
    for fs, order, kind, wn in GRID:
        ours = butter_sos(order, wn, kind, fs)
        ref = ss.butter(order, wn, btype=kind, fs=fs, output="sos")
        assert ours.shape == ref.shape and np.array_equal(ours, ref), (fs, order, kind, wn)


@pytest.mark.filterwarnings("ignore:The filter's denominator is extremely small")
def test_sosfilt_zi_and_group_delay_equal_scipy_bit_for_bit():
    for fs, order, kind, wn in GRID:
        sos = ss.butter(order, wn, btype=kind, fs=fs, output="sos")
        assert np.array_equal(sosfilt_zi(sos), ss.sosfilt_zi(sos)), (fs, order, kind, wn)
        for section in sos:
            for f in (1.0, 0.3 * fs):
                ref = float(ss.group_delay((section[:3], section[3:]), w=[f], fs=fs)[1][0])
                assert group_delay_at(section[:3], section[3:], f, fs) == ref, (fs, order, kind, wn, f)
    # the running mean removal's delay, as RunningNorm states it
    for fs, tau in ((125.0, 4.0), (250.0, 1.0), (100.0, 10.0)):
        norm = RunningNorm(fs, tau)
        b = (1.0 - norm.alpha) * np.array([1.0, -1.0])
        a = np.array([1.0, -(1.0 - norm.alpha)])
        assert norm.group_delay(1.0) == float(ss.group_delay((b, a), w=[1.0], fs=fs)[1][0])


def test_group_delay_at_singular_point_is_zero():
    # a double zero on the unit circle at the asked frequency (0 Hz): scipy warns that the
    # delay is singular and returns 0, so do we (silently)
    b, a = np.array([1.0, -2.0, 1.0]), np.array([1.0])
    with pytest.warns(UserWarning, match="singular"), np.errstate(invalid="ignore"):
        ref = float(ss.group_delay((b, a), w=[0.0], fs=125.0)[1][0])
    assert group_delay_at(b, a, 0.0, 125.0) == ref == 0.0


def test_stream_filter_warm_start_uses_scipy_steady_state():
    sos = filter_design(125.0, "bandpass", low=0.5, high=8.0)
    f = StreamFilter(sos)
    assert np.array_equal(f.zi_step, ss.sosfilt_zi(sos))


def _scipy_table(up: int, down: int) -> tuple[np.ndarray, int]:
    """The resampler's polyphase table built with scipy.signal.kaiserord/firwin."""
    fs_in, fs_out = float(down), float(up)
    fs_up = up * fs_in
    f_low = min(fs_in, fs_out)
    n_min, beta = ss.kaiserord(STOPBAND_DB, (STOP_EDGE - PASS_EDGE) * f_low / (fs_up / 2.0))
    d = max(math.ceil((n_min - 1) / (2 * down)), math.ceil(max(up, down) / down), 1)
    numtaps = 2 * down * d + 1
    h = ss.firwin(numtaps, 0.5 * (PASS_EDGE + STOP_EDGE) * f_low, window=("kaiser", beta), fs=fs_up) * up
    k = -(-numtaps // up)
    padded = np.zeros(k * up)
    padded[:numtaps] = h
    table = np.ascontiguousarray(padded.reshape(k, up).T)
    table /= table.sum(axis=1, keepdims=True)
    return table, d


@pytest.mark.parametrize("fs_in", [250.0, 100.0, 256.0, 360.0, 500.0, 128.0, 1000.0, 200.0, 62.5, 249.89])
def test_resampler_taps_equal_scipy_design_bit_for_bit(fs_in):
    up, down = resample_ratio(fs_in, 125.0)
    table, d = _design(up, down)
    ref_table, ref_d = _scipy_table(up, down)
    assert d == ref_d and table.shape == ref_table.shape and np.array_equal(table, ref_table)
    rs = StreamResampler(fs_in, 125.0)
    assert np.array_equal(rs.taps, ref_table)


def test_kaiser_design_equals_scipy_on_a_grid():
    for ripple in (21.0, 30.0, 40.0, 50.0, 60.0, 80.0):
        for width in (0.01, 0.05, 0.1, 0.3):
            assert kaiserord(ripple, width) == ss.kaiserord(ripple, width)
    with pytest.raises(ValueError, match="too small"):
        kaiserord(5.0, 0.1)
    for numtaps in (1, 3, 31, 101, 257):
        for beta in (0.0, 2.5, 5.65326, 8.6):
            for fs, cut in ((2.0, 0.3), (100.0, 10.0), (31250.0, 56.25)):
                ours = firwin_kaiser(numtaps, cut, beta, fs)
                ref = ss.firwin(numtaps, cut, window=("kaiser", beta), fs=fs)
                assert np.array_equal(ours, ref), (numtaps, beta, fs, cut)
