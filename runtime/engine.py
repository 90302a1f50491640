"""The streaming runtime: device samples in, point-wise ABP and beat events out, incrementally.

Per stream: the bundle's preprocessing chain per input channel (the same numba kernels the
model was trained through), a flat/clipped-input gate, the model (window models: a ring
buffer run every ``hop`` samples emitting the newest ``hop`` values; streamable models: the
external-state ONNX stepped chunk by chunk with its state carried, O(1) work per sample),
de-normalisation, an optional cuff-calibration offset, and the beat detector on the predicted
waveform. No torch anywhere on this path.

Timing: output index ``k`` (model rate) estimates ABP at model index ``k - delay``; its time
is ``(k - delay - resampler_delay) / fs`` seconds after the first device sample, the same
time axis as the device's own samples, so outputs line up with a truth file.

Accounting: every device sample is parsed, rejected (decoder reasons) or missing (gaps,
inserted as NaN so the time axis stays right); every model-rate output carries ``valid`` and,
when invalid, one reason: ``warmup``, ``gap``, ``flat``, ``clipped``, ``reset``, ``artefact``,
``range``.

Input gates (an output is claimed only when its whole receptive field passed them):

- flat: the rolling SD of ``flat_s`` seconds below 5 ADC steps, per channel (the offline
  masks' rule; without a known ADC step, a CSV log, only an exactly constant input); and
  *stuck*: any one input channel repeating its exact previous value for ``stuck_s`` seconds
  (a frozen front-end, a stale sensor FIFO, a lead-off that holds the ECG at mid-scale; a
  live converter's noise never holds one code that long). The model needs every input, so
  one frozen channel refuses the claim. The stuck rule reacts within ``stuck_s``, inside the
  model's look-ahead (``delay``), where the 2 s SD window would let ~2 s of a frozen signal
  through as valid output.
- range: an absurd value (beyond any converter, or 1000x the channel's pulsatile RMS from
  its level; :class:`edgebp.processing.quality.InputGuard`) is a missing sample to the chain,
  before the filter and normaliser could learn from it; a level that stays there 1 s is
  taken as a new operating point and the chain restarts there.
- artefact, motion: a PPG input whose short-term pulsatile power (rising in 0.3 s, falling in
  0.05 s) exceeds 9x its long-term power, held while the burst lasts and 2 s after it
  (``InputGuard``; ``motion=False`` turns it off).
- clipped: runs at the rails (:class:`edgebp.processing.quality.FlatClipDetector`).
- artefact: a PPG input whose running z-score (the model's own normalised input) leaves
  +-``artefact_z``. A pulse wave stays within about +-3 of its running mean and SD; a jump
  to 5 SDs within the 4 s normalisation window needs the amplitude to change several-fold in
  seconds, which motion or a displaced sensor does and perfusion does not. With the motion
  gate above, 98 % of simulated 4 s bursts' outputs are refused (tests/test_fault_matrix.py);
  ECG is not gated this way (R peaks legitimately reach 5-6 SDs).

After a flat, clipped or motion stretch the filter and running normaliser of every input restart
(the resampler keeps its place, so the time axis is unchanged): the samples that entered
before the gate fired (up to ``clip_s``/``stuck_s`` of rail or frozen input) would otherwise
inflate the running variance for many time constants and shrink the model's input.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from edgebp.processing.beats import Beats, BeatDetector
from edgebp.processing.chain import ChainConfig, Preprocessor
from edgebp.processing.quality import CLIPPED, FLAT, MOTION, RANGE, REACQUIRED, FlatClipDetector, InputGuard, stuck_block
from edgebp.runtime.backends import STREAM_TIME_DIM, OrtBackend, backend_open
from edgebp.runtime.beat_features import WAVE_FEATURES
from edgebp.runtime.beat_keying import BeatKeyer
from edgebp.runtime.calibrated import (METHODS, CalibratedEstimator, EstimatorParams, cuff_csv_read, estimator_params_hold,
                                       estimator_params_offset)
from edgebp.runtime.bundle import Bundle, stream_states

log = logging.getLogger(__name__)

STEP_LATENCY_KEEP = 20_000  # push latencies kept for the summary's percentiles (~7 min of 20 ms packets)
REASONS = ("ok", "warmup", "gap", "flat", "clipped", "reset", "artefact", "range")
R_OK, R_WARMUP, R_GAP, R_FLAT, R_CLIP, R_RESET, R_ARTEFACT, R_RANGE = range(8)
# gate flags (FLAT | CLIPPED bits) -> reason code: clipped first, then flat
_GATE_LUT = np.array([R_CLIP if f & CLIPPED else R_FLAT if f & FLAT else R_OK for f in range(256)], np.int8)


# the arrays of an empty block (shared, read-only: a block's arrays are never written in place)
_Z, _ZB, _ZI, _ZP = np.zeros(0), np.zeros(0, bool), np.zeros(0, np.int8), np.zeros(0, np.intp)
for _a in (_Z, _ZB, _ZI, _ZP):
    _a.flags.writeable = False


@dataclass
class OutputBlock:
    """Point-wise outputs of one step: times (s), ABP (mmHg, NaN when invalid), validity, reasons."""

    t: np.ndarray
    abp: np.ndarray
    valid: np.ndarray
    reason: np.ndarray
    beats: list = field(default_factory=list)  # dicts: t, sbp, dbp, map

    @classmethod
    def empty(cls) -> "OutputBlock":
        return cls(_Z, _Z, _ZB, _ZI, [])


@dataclass
class Calibration:
    """The cuff readings given up front (``--calibration CSV``) and how they calibrate.

    ``method``: ``auto`` (the bundle's calibrated estimator, else ``offset``), ``estimator``,
    ``offset`` or ``hold`` (:mod:`edgebp.runtime.calibrated`). Readings that arrive inside
    the stream are added by :meth:`StreamRuntime.cuff_reading`.
    """

    readings: list = field(default_factory=list)
    method: str = "auto"

    def __post_init__(self) -> None:
        # the API entry: readings built by hand get the same plausibility check as the CSV
        # and in-stream ones (finite, 40-300 mmHg, DBP below SBP), so no NaN or absurd cuff
        # value ever calibrates a row marked valid
        from edgebp.runtime.calibrated import cuff_check

        for r in self.readings:
            why = cuff_check(getattr(r, "sbp", None), getattr(r, "dbp", None))
            t = getattr(r, "t", None)
            if why is None and not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0):
                why = f"time {t!r} s is not a time on the stream (finite, >= 0)"
            if why is not None:
                where = getattr(r, "where", "") or "Calibration"
                raise ValueError(f"{where}: cuff reading rejected: {why}")

    @classmethod
    def from_csv(cls, path: str, method: str = "auto") -> "Calibration":
        return cls(cuff_csv_read(path), method)


CALIBRATION_METHODS = ("auto", *METHODS)


class StreamRuntime:
    """One device stream through one bundle.

    Parameters
    ----------
    bundle : Bundle
        A verified bundle (:func:`edgebp.runtime.bundle.bundle_load`).
    device_fs : float
        The device's sampling rate (from the stream header or ``--fs``).
    channel_index : dict
        Bundle input name -> column of the decoded sample values.
    backend, variant : str
        ``ort``/``tensorrt``/``torch`` and ``fp32``/``int8``.
    hop : int, optional
        Window models: samples between runs (default: the manifest's).
    """

    def __init__(self, bundle: Bundle, device_fs: float, channel_index: dict[str, int], backend: str = "ort",
                 variant: str = "int8", hop: int | None = None, threads: int = 1, calibration: Calibration | None = None,
                 flat_s: float = 2.0, gains: dict[str, float] | None = None, run_dir: str | None = None, stuck_s: float = 0.1,
                 artefact_z: float | None = 5.0, beat_source: str = "auto", estimator: EstimatorParams | None = None,
                 features: bool = False, motion: bool = True):
        m = bundle.manifest
        if backend == "torch" and not run_dir:
            raise ValueError("--backend torch needs --run-dir RUN_DIR: a bundle holds ONNX models, not the torch weights")
        self.bundle, self.m = bundle, m
        self.inputs = list(m["inputs"])
        missing = [c for c in self.inputs if c not in channel_index]
        if missing:
            raise ValueError(f"the stream has no {', '.join(missing)} channel needed by the model (it has: {', '.join(channel_index) or 'none'}); use --channel-map")
        self.channel_index = channel_index
        # the model's inputs are the stream's columns 0.. in order (then _process reads them as they are)
        self._col_idx = np.array([channel_index[c] for c in self.inputs], np.intp)
        self._cols_plain = self._col_idx.tolist() == list(range(len(self.inputs)))
        self.fs_dev = float(device_fs)
        self.fs = float(m["fs"])
        self.norm = m["normalisation"]
        self.delay = int(m["delay"])
        self.calibration = calibration
        self.est_params = self._estimator_choose(bundle, calibration, estimator)
        self.streamable = bool(m.get("streaming")) and m["causal"]
        self.window = int(m["window"])
        self.hop = int(hop or m["hop"])
        if not self.streamable and not 1 <= self.hop <= self.window:
            raise ValueError(f"--hop {self.hop} must be within 1..{self.window} (the model window)")
        self.rf = max(int(m["receptive_field"]), 1)
        self.values_model = m["output"] == "values"
        # the model files
        if self.streamable:
            key = m["streaming"]["file_keys"].get(variant)
            if backend == "tensorrt":  # each precision's TensorRT form (edgebp.variants.tensorrt_file_key)
                from edgebp.runtime.tensorrt_backend import bundle_backend
                from edgebp.variants import tensorrt_file_key

                self.backend = bundle_backend(bundle, tensorrt_file_key(variant, streaming=True))
            elif key is None:
                raise ValueError(f"variant {variant!r}: this bundle's streaming model exists as {', '.join(m['streaming']['file_keys'])}")
            else:
                # every call is one step of the same length (the padded last one too)
                self.backend = backend_open(backend, run_dir if backend == "torch" else bundle.file(key), threads=threads, precision=variant,
                                            dims={STREAM_TIME_DIM: int(m["streaming"]["chunk"])})
            self.chunk = int(m["streaming"]["chunk"])
            states = stream_states(m, variant)  # a pruned streaming model has narrower states
            self.state_names = [s["name"] for s in states]
            self.state_shapes = [tuple(s["shape"]) for s in states]
        else:
            if backend == "tensorrt":
                from edgebp.runtime.tensorrt_backend import bundle_backend
                from edgebp.variants import tensorrt_file_key

                self.backend = bundle_backend(bundle, tensorrt_file_key(variant, streaming=False))
            else:
                from edgebp.variants import bundle_file_key

                # "pruned-int8" is the file key "pruned_int8"
                self.backend = backend_open(backend, run_dir if backend == "torch" else bundle.file(bundle_file_key(variant)), threads=threads, precision=variant)
            self.chunk = self.hop
        self.in_name = self.backend.input_names[0]
        # this engine's own session (backend_open makes one per engine): step() keeps the
        # states in buffers bound to it, which only one stream may use
        self._step = self.backend.step if self.streamable and isinstance(self.backend, OrtBackend) else None
        # preprocessing per input
        self.pre = {c: Preprocessor(ChainConfig.from_dict({**m["preprocessing"][c], "fs_in": self.fs_dev, "fs_out": self.fs})) for c in self.inputs}
        self._pre0 = next(iter(self.pre.values()))
        self._hold = True  # hold pushes too small to complete a model step (see push)
        self.res_delay = self._pre0.resampler.delay_out
        # flat: rolling SD below 5 ADC steps (the offline masks' rule) over flat_s seconds
        # (without the ADC step, only an exactly constant input is called flat: no guessed scale)
        gains = gains or {}
        self.gate = {c: FlatClipDetector(self.fs_dev, flat_s=flat_s, flat_sd=5.0 * float(gains[c]) if c in gains else 0.0) for c in self.inputs}
        # stuck: this many identical samples in a row on any one input channel (a frozen
        # front-end, or a lead-off that holds the ECG at mid-scale: the model needs every
        # input, so one frozen channel is enough to refuse the claim)
        self.stuck_n = max(2, int(round(stuck_s * self.fs_dev)))
        # absurd values (all inputs) and motion (PPG inputs), before the chain: a value the
        # filter and running normaliser learnt from would spoil them for minutes
        self.guard = {c: InputGuard(self.fs_dev, motion=c.startswith("ppg") and motion, step=float(gains.get(c, 0.0)))
                      for c in self.inputs}
        self.artefact_z = None if artefact_z is None else float(artefact_z)
        self.artefact_rows = [j for j, c in enumerate(self.inputs) if c.startswith("ppg")]
        self._hist_n = int(np.ceil((self.res_delay + 2) * self.fs_dev / self.fs)) + 2
        self.beat_det = BeatDetector(self.fs)
        # beats keyed to the input's own pulses (PPG preferred, else ECG R peaks); value
        # models (one SBP/DBP per window) have no waveform to read beats from
        if beat_source not in ("auto", "ppg", "ecg"):
            raise ValueError(f"beat source {beat_source!r}: valid sources are auto, ppg, ecg")
        if beat_source != "auto" and beat_source not in self.inputs:
            raise ValueError(f"beat source {beat_source!r}: the model has no {beat_source} input (inputs: {', '.join(self.inputs)})")
        auto = "ppg" if "ppg" in self.inputs else "ecg" if "ecg" in self.inputs else None
        self.beat_source = None if self.values_model else (auto if beat_source == "auto" else beat_source)
        # the estimator reads the beats' features (PAT needs the ECG beside the PPG)
        self.features = bool(features) or self.est_params.method == "estimator"
        self.keyer = BeatKeyer(self.fs, self.beat_source, REASONS, features=self.features) if self.beat_source else None
        self._key_row = self.inputs.index(self.beat_source) if self.beat_source else None
        self._ecg_row = self.inputs.index("ecg") if self.features and "ecg" in self.inputs and self.beat_source == "ppg" else None
        self.estimator = CalibratedEstimator(self.est_params)
        for r in (calibration.readings if calibration is not None else []):
            self.estimator.reading_add(r.t, r.sbp, r.dbp, r.window_s, r.where)
        self.t_base = 0.0  # device time (s) of the first sample since the last device reset
        self.reset()
        self.stats = {"outputs": 0, "valid": 0, "reasons": {r: 0 for r in REASONS if r != "ok"}, "beats": 0, "beats_invalid": 0,
                      "model_calls": 0, "resets": 0, "cuff_readings": 0, "cuff_rejected": 0,
                      # the latest steps only: a live stream must not grow without bound (a list
                      # of every 20 ms step grew ~6 MB an hour)
                      "step_latency_s": collections.deque(maxlen=STEP_LATENCY_KEEP)}

    @staticmethod
    def _estimator_choose(bundle: Bundle, calibration: Calibration | None, given: EstimatorParams | None) -> EstimatorParams:
        method = calibration.method if calibration is not None else "auto"
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method {method!r}: valid methods are {', '.join(CALIBRATION_METHODS)}")
        own = given if given is not None else bundle.estimator()
        if method in ("auto", "estimator"):
            if own is not None:
                return own
            if method == "estimator":
                raise ValueError(f"{bundle.path}: this bundle carries no calibrated estimator (estimator.json); use the offset or hold method")
            return estimator_params_offset()
        return estimator_params_offset() if method == "offset" else estimator_params_hold()

    def cuff_reading(self, sbp: float, dbp: float, t: float | None = None, where: str = "", window_s: float | None = None) -> bool:
        """A cuff reading arrived in the stream; it applies at device time ``t`` (default: the
        time of the next device sample). An implausible one is refused with a warning naming
        ``where``; False then."""
        if t is None:
            t = self.t_base + self.samples_in / self.fs_dev
        ok = self.estimator.reading_add(float(t), sbp, dbp, window_s, where)
        self.stats["cuff_readings" if ok else "cuff_rejected"] += 1
        return ok

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Start over (device reset): fresh preprocessing, model and beat states."""
        self.pre_state = {c: p.init_state() for c, p in self.pre.items()}
        self.k = 0  # model-rate samples produced by the preprocessor
        self.pending_x = np.zeros((len(self.inputs), 0), np.float32)
        self.pending_bad = np.zeros(0, np.int8)
        self.since_bad = 0  # samples since the last invalid input (for the causal receptive field)
        self.ring = np.zeros((len(self.inputs), 0), np.float32)
        self.ring_bad = np.zeros(0, np.int8)
        self.n_model_in = 0
        self.out_k = 0  # next output index
        self.states = [np.zeros(s, np.float32) for s in getattr(self, "state_shapes", [])]
        self.beat_state = self.beat_det.init_state()
        if getattr(self, "keyer", None) is not None:
            self.keyer.reset()
        self.gate_state = {c: g.init_state() for c, g in self.gate.items()}
        self._dev_base = 0
        self._last_bad_reason = R_WARMUP
        self._last_in_reason = R_GAP
        self._stuck_last = np.full(len(self.inputs), np.nan)
        self._stuck_run = np.zeros(len(self.inputs), np.int64)
        self.guard_state = {c: g.init_state() for c, g in self.guard.items()}
        self._reacquired = np.zeros(0, bool)  # per sample of the block in _process: a channel took a new level
        self._gated_last = False
        self._code_hist = np.zeros(0, np.int8)
        # device samples held until they complete a model step (see push)
        self._key_q = None  # (model index, keyer input, ECG input) not yet given to the keyer
        self._held_vals: list[np.ndarray] = []
        self._held_bad: list[np.ndarray | None] = []
        self._held_n = 0

    # ----------------------------------------------------------------- input gate
    def _gate(self, vals: np.ndarray) -> np.ndarray:
        """Per device sample: 0 ok, R_CLIP, R_FLAT (flat or a stuck channel), R_RANGE or
        R_ARTEFACT (motion), from the shared streaming detectors
        (:class:`edgebp.processing.quality.FlatClipDetector`, :class:`~edgebp.processing.quality.InputGuard`)
        with their states carried; also sets ``self._reacquired`` (a channel took a new level)."""
        n = len(vals)
        # None: no sample flagged yet (the usual clean block skips the masks' arithmetic)
        code = rng = motion = reacq = None
        for j, c in enumerate(self.inputs):
            x = vals[:, j]
            gf, self.guard_state[c] = self.guard[c].process(x, self.guard_state[c])
            if gf.any():
                r = (gf & RANGE) > 0
                rng = r if rng is None else rng | r
                m = (gf & MOTION) > 0
                motion = m if motion is None else motion | m
                q = (gf & REACQUIRED) > 0
                reacq = q if reacq is None else reacq | q
                # an absurd value never reaches the flat/clip windows either (1e308 squared is inf)
                if r.any():
                    x = np.where(r, np.nan, x)
            flags, self.gate_state[c] = self.gate[c].process(x, self.gate_state[c])
            if flags.any():
                # clipped wins over everything, flat over ok: max(code, R_CLIP | R_FLAT | 0)
                g = _GATE_LUT[flags]
                code = g if code is None else np.maximum(code, g)
        self._reacquired = reacq if reacq is not None else np.zeros(n, bool)
        if code is None:
            code = np.zeros(n, np.int8)
        stuck = self._stuck(vals)
        if stuck.any():
            code[stuck & (code == 0)] = R_FLAT
        if rng is not None:
            code[rng & (code == 0)] = R_RANGE
        if motion is not None:
            code[motion & (code == 0)] = R_ARTEFACT
        return code

    def _preprocess(self, c: str, x: np.ndarray, restarts: np.ndarray) -> np.ndarray:
        """One input through its chain, with filter and normaliser restarted at ``restarts``."""
        pre, st = self.pre[c], self.pre_state[c]
        if not len(restarts):
            y, self.pre_state[c] = pre.process(x, st)
            return np.atleast_2d(y)
        parts, pos = [], 0
        for i in [*restarts.tolist(), len(x)]:
            if i > pos:
                y, st = pre.process(x[pos:i], st)
                parts.append(np.atleast_2d(y))
            if i < len(x):
                st = dataclasses.replace(st, filter=None if pre.filter is None else pre.filter.init_state(),
                                         norm=None if pre.norm is None else pre.norm.init_state())
            pos = i
        self.pre_state[c] = st
        return np.concatenate(parts, axis=1)

    def _stuck(self, vals: np.ndarray) -> np.ndarray:
        """Samples where some input channel ends a run of ``stuck_n`` identical values.

        Per channel: a live converter's noise never holds one code for ``stuck_s`` (0.1 s);
        measured on 14 clean challenge2015 records the longest ECG run is 9 samples at
        250 Hz, while a PLETH clipped at its trough holds one value for 33-183 samples
        (gated, rightly: the pulse shape is cut)."""
        # one kernel pass (was ~10 numpy calls per step); the state is carried in place
        return stuck_block(np.ascontiguousarray(vals, dtype=np.float64), self._stuck_last, self._stuck_run, self.stuck_n - 1)

    # ----------------------------------------------------------------- main step
    def push(self, vals: np.ndarray, bad_code: np.ndarray | None = None) -> OutputBlock:
        """Feed device samples ``(n, n_channels)`` (physical units; NaN = missing).

        Samples that cannot complete a model step yet are held and processed together with
        the push that does (every stage is exact under any cut of the stream, so the
        outputs are the same bits, and they come out of the same push as before: outputs
        only ever leave on a model step). A packet of 5 device samples then costs a copy,
        not the whole chain.
        """
        t_start = time.perf_counter()
        vals = np.asarray(vals, dtype=np.float64)
        if vals.ndim != 2:
            raise ValueError("push: values must be (n, n_channels)")
        n = vals.shape[0]
        if bad_code is not None:
            bad_code = np.asarray(bad_code)
            if bad_code.shape != (n,):
                raise ValueError(f"push: bad_code must be ({n},), got {bad_code.shape}")
        if n == 0:
            out = OutputBlock.empty()
            self.stats["step_latency_s"].append(time.perf_counter() - t_start)
            return out
        total = self._dev_base + self._held_n + n
        if self._hold and self.pending_x.shape[1] + self._pre0.n_out(total) - self.k < self.chunk:
            self._held_vals.append(vals.copy())
            self._held_bad.append(None if bad_code is None else bad_code.copy())
            self._held_n += n
            out = OutputBlock.empty()
            self.stats["step_latency_s"].append(time.perf_counter() - t_start)
            return out
        if self._held_n:
            vals, bad_code = self._held_take(vals, bad_code)
        out = self._process(vals, bad_code)
        self.stats["step_latency_s"].append(time.perf_counter() - t_start)
        return out

    def _held_take(self, vals: np.ndarray | None = None, bad_code: np.ndarray | None = None):
        """The held samples (and ``vals`` after them) as one block, and their codes."""
        parts, bads = self._held_vals, self._held_bad
        if vals is not None:
            parts, bads = parts + [vals], bads + [bad_code]
        self._held_vals, self._held_bad, self._held_n = [], [], 0
        v = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if all(b is None for b in bads):
            return v, None
        return v, np.concatenate([np.zeros(len(p), np.int8) if b is None else b for p, b in zip(parts, bads)])

    @property
    def samples_in(self) -> int:
        """Device samples pushed since the last reset (held ones included)."""
        return self._dev_base + self._held_n

    def _process(self, vals: np.ndarray, bad_code: np.ndarray | None) -> OutputBlock:
        """The whole chain on a block of device samples."""
        if not len(vals):
            cols = np.zeros((0, len(self.inputs)))
        elif self._cols_plain and vals.shape[1] == len(self.inputs):
            cols = vals  # the inputs are the columns in order: only read below, never written
        else:  # the same array np.stack of the columns gives, in one call
            cols = vals[:, self._col_idx]
        code = self._gate(cols) if len(cols) else np.zeros(0, np.int8)
        if bad_code is not None:
            code = np.where(bad_code > 0, bad_code, code)
        if not np.isfinite(cols).all():  # else no sample is missing
            missing = ~np.isfinite(cols).all(axis=1)
            code[missing & (code == 0)] = R_GAP
        any_code = bool(code.any())  # False for the usual clean block: its masks are no-ops
        x_in = cols  # read only (each chain copies its column)
        if any_code:
            x_in = cols.copy()
            x_in[code > 0] = np.nan  # flat/clipped input is a gap to the model: no BP is claimed from it
        # after a flat/clipped stretch the filter and running normaliser start afresh: the
        # samples before the gate fired (up to clip_s/stuck_s of rail or frozen input) would
        # otherwise sit in the running variance for many time constants
        # (the same after a motion burst: the filter's tail of a burst and the variance it
        # left would shrink the model's input for tens of seconds; and where a channel took a
        # new level after absurd values; an absurd value alone never entered the chain)
        if not any_code and not self._gated_last and len(cols) and not self._reacquired.any():
            restarts = _ZP  # nothing gated now or just before, no new level: no restart
        else:
            gated = (code == R_FLAT) | (code == R_CLIP) | (code == R_ARTEFACT)
            prev = np.concatenate([[self._gated_last], gated[:-1]])
            restarts = np.flatnonzero((prev & ~gated) | (self._reacquired if len(cols) else gated))
            if len(gated):
                self._gated_last = bool(gated[-1])
        ys = []
        for j, c in enumerate(self.inputs):
            ys.append(self._preprocess(c, x_in[:, j], restarts))
        n_new = ys[0].shape[1]
        X = np.concatenate(ys, axis=0).astype(np.float32) if n_new else np.zeros((len(self.inputs), 0), np.float32)
        # reason per new model-rate sample: the device sample it came from (nearest, delay-compensated)
        # the resampler's delay maps the first new outputs to samples of earlier blocks: keep
        # their codes, so the reasons do not depend on how the stream was cut into blocks
        hist = np.concatenate([self._code_hist, code])
        if not any_code and not self._code_hist.any():
            reason_new = np.zeros(n_new, np.int8)  # every code it could pick is 0
        else:
            k_idx = self.k + np.arange(n_new)
            base = self._dev_base - len(self._code_hist)
            src = np.clip(np.floor((k_idx - self.res_delay) * self.fs_dev / self.fs).astype(np.int64) - base, 0, max(len(hist) - 1, 0))
            reason_new = (hist[src] if len(hist) else np.zeros(n_new, np.int8)).astype(np.int8, copy=False)
        self._code_hist = hist[-self._hist_n:]
        # a model-rate sample that is NaN while its device sample passed the gates is the
        # filter restarting after a gated stretch (or the resampler's tail of a gap): it
        # carries the reason of the stretch before it, so a lead-off reads "flat" until the
        # model's input is whole again, not "gap"
        if n_new and (reason_new.any() or not np.isfinite(X).all()):  # else every step below leaves zeros
            finite = np.isfinite(X).all(axis=0)
            nan_x = ~finite
            pos = np.where(reason_new > 0, np.arange(n_new), -1)
            last = np.maximum.accumulate(pos)
            fill = np.where(last >= 0, reason_new[np.maximum(last, 0)], self._last_in_reason)
            reason_new = np.where(nan_x & (reason_new == 0), fill, reason_new).astype(np.int8)
            if (reason_new > 0).any():
                self._last_in_reason = int(reason_new[np.flatnonzero(reason_new > 0)[-1]])
            reason_new[finite] = 0
        if self.artefact_z is not None and n_new:
            for j in self.artefact_rows:
                out_z = np.abs(X[j]) > self.artefact_z
                if out_z.any():
                    reason_new[out_z & (reason_new == 0)] = R_ARTEFACT
        self._dev_base += len(code)
        self.k += n_new
        if self.keyer is not None and n_new:
            any_reason = reason_new.any()
            xk = X[self._key_row].astype(np.float64)
            if any_reason:
                xk[reason_new > 0] = np.nan  # no beat is keyed from gated, missing or artefact input
            xe = None
            if self._ecg_row is not None:
                xe = X[self._ecg_row].astype(np.float64)
                if any_reason:
                    xe[reason_new > 0] = np.nan
            # fed step by step in _model_feed: the keyer sees, at each step, the input up to that
            # step's end and no further, as on a live stream (input it saw ahead of the step
            # released beats, and with them the cuff offset, earlier on a long read)
            self._key_q = (self.k - n_new, xk, xe)
        out = self._model_feed(X, reason_new)
        if self._hold and self.k != self._pre0.n_out(self._dev_base):  # pragma: no cover - never seen
            # the prediction behind holding failed: the outputs stay the same bits, only
            # their timing would move; stop holding rather than delay them
            log.warning("preprocessing gave %d samples from %d, not %d: small pushes are no longer held",
                        self.k, self._dev_base, self._pre0.n_out(self._dev_base))
            self._hold = False
        return out

    def _model_feed(self, X: np.ndarray, reason: np.ndarray) -> OutputBlock:
        self.pending_x = np.concatenate([self.pending_x, X], axis=1)
        self.pending_bad = np.concatenate([self.pending_bad, reason])
        est = self.estimator
        if not self.features and not est.pending and est.cuff is None:
            # no cuff reading yet and no beat features: no offset to read per step, and the
            # beats are the same whenever the keyer sees its input, so the steps of a long
            # read are finalised together (fewer small calls; the same bits as step by step).
            # The features read the model's outputs beside the input: they need the live order
            self._key_feed(None)
            outs = []
            while self.pending_x.shape[1] >= self.chunk:
                xc, rc = self.pending_x[:, :self.chunk], self.pending_bad[:self.chunk]
                self.pending_x, self.pending_bad = self.pending_x[:, self.chunk:], self.pending_bad[self.chunk:]
                outs.append(self._run_chunk(xc, rc))
            return self._finalise(outs) if outs else OutputBlock.empty()
        blocks = []
        # always the same step, whatever the read or packet size: ONNX Runtime's kernels (int8
        # above all) round differently for different call lengths, so a call length that
        # followed the reads made the outputs depend on them (13 of 14,748 outputs of a real
        # record moved by up to 0.9 mmHg between read sizes)
        step = self.chunk
        while self.pending_x.shape[1] >= step:
            xc, rc = self.pending_x[:, :step], self.pending_bad[:step]
            self.pending_x, self.pending_bad = self.pending_x[:, step:], self.pending_bad[step:]
            o = self._run_chunk(xc, rc)
            # one step at a time, as a live stream delivers them: the keyer's input up to the
            # step's end, then the step's outputs; the cuff calibration's waveform offset is
            # read per step, after that step's beats reached the estimator (one offset for a
            # whole read moved a calibrated stretch with the read size)
            self._key_feed(self.n_model_in)
            blocks.append(self._finalise([o]))
        self._key_feed(None)
        if not blocks:
            return OutputBlock.empty()
        if len(blocks) == 1:
            return blocks[0]
        return OutputBlock(np.concatenate([b.t for b in blocks]), np.concatenate([b.abp for b in blocks]),
                           np.concatenate([b.valid for b in blocks]), np.concatenate([b.reason for b in blocks]),
                           [r for b in blocks for r in b.beats])

    def _key_feed(self, upto: int | None) -> None:
        """The beat keyer's input queued by this push, up to model index ``upto`` (None: all)."""
        if self._key_q is None:
            return
        k0, xk, xe = self._key_q
        m = len(xk) if upto is None else min(len(xk), max(0, upto - k0))
        if m == 0:
            return
        self.keyer.push_input(xk[:m], None if xe is None else xe[:m])
        self._key_q = None if m == len(xk) else (k0 + m, xk[m:], None if xe is None else xe[m:])

    def _run_chunk(self, xc: np.ndarray, rc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (k indices, normalised outputs, reason codes) for one model step."""
        n = xc.shape[1]
        if self.streamable:
            bad = rc > 0
            any_bad = bool(bad.any())
            if any_bad:
                feed = np.where(bad[None, :], 0.0, xc).astype(np.float32)
            else:  # the same values: np.where would pass every one through
                feed = np.ascontiguousarray(xc, dtype=np.float32)
            if self._step is not None:  # ONNX Runtime: the states stay in its bound buffers
                y0, self.states = self._step(feed[None], self.states, self.state_names)
            else:
                res = self.backend.run({self.in_name: feed[None]} | dict(zip(self.state_names, self.states)))
                y0, self.states = res[0], [np.asarray(s) for s in res[1:]]
            self.stats["model_calls"] += 1
            y = np.asarray(y0).reshape(-1)[:n].astype(np.float64)
            k = self.n_model_in + np.arange(n)
            if not any_bad and n and self.since_bad + 1 >= self.rf and self.n_model_in >= self.rf - 1:
                # the usual clean step past warm-up: every output's receptive field is clean
                # (the general path below gives all zeros here)
                self.since_bad += n
                self.n_model_in += n
                return k, y, np.zeros(n, np.int8)
            # an output is claimed only when its whole receptive field is clean input
            idx = np.arange(n)
            bad_pos = np.where(bad, idx, -1)
            last_bad = np.maximum.accumulate(bad_pos)
            carried = last_bad < 0
            since = np.where(carried, self.since_bad + idx + 1, idx - last_bad)
            since[bad] = 0
            last_reason = np.where(carried, self._last_bad_reason, rc[np.maximum(last_bad, 0)])
            reason = np.where(since < self.rf, last_reason, 0).astype(np.int8)
            reason[(self.n_model_in + idx) < self.rf - 1] = R_WARMUP
            if n:
                self.since_bad = int(since[-1])
                if any_bad:
                    self._last_bad_reason = int(rc[np.flatnonzero(bad)[-1]])
            self.n_model_in += n
            return k, y, reason
        # window models: ring buffer of the newest `window` samples, run every hop
        self.ring = np.concatenate([self.ring, xc], axis=1)[:, -self.window :]
        self.ring_bad = np.concatenate([self.ring_bad, rc])[-self.window :]
        k = self.n_model_in + np.arange(n)
        self.n_model_in += n
        if self.ring.shape[1] < self.window:
            return k, np.full(n, np.nan), np.full(n, R_WARMUP, np.int8)
        if (self.ring_bad > 0).any():
            r = int(self.ring_bad[self.ring_bad > 0][-1])
            return k, np.full(n, np.nan), np.full(n, r, np.int8)
        y = np.asarray(self.backend.run({self.in_name: self.ring[None].astype(np.float32)})[0]).reshape(-1)
        self.stats["model_calls"] += 1
        return k, y[-n:].astype(np.float64), np.zeros(n, np.int8)

    def _finalise(self, outs) -> OutputBlock:
        if len(outs) == 1:  # one step (the live case): its arrays, not a concatenation of one
            k, y, reason = outs[0]
            reason = reason.astype(np.int8)  # a copy: written below
        else:
            k = np.concatenate([o[0] for o in outs])
            y = np.concatenate([o[1] for o in outs])
            reason = np.concatenate([o[2] for o in outs]).astype(np.int8)
        abp = y * self.norm["abp_std"] + self.norm["abp_mean"]
        valid = (reason == 0) & np.isfinite(abp)
        all_valid = bool(valid.all())
        if not all_valid:  # else the mask and np.where below change nothing
            reason[(~valid) & (reason == 0)] = R_GAP
            abp = np.where(valid, abp, np.nan)
        kd = k - self.delay
        t = (kd - self.res_delay) / self.fs + self.t_base
        if self.keyer is not None:
            self.keyer.push_outputs(kd, abp, reason)
            beats = self._keyed_rows(self.keyer.pop())
        else:
            beats = self._beats(abp, t)
        off = self.estimator.wave_offset()
        if off is not None:  # the waveform moves by the cuff minus the model's MAP at calibration
            abp = abp + off
        self.stats["outputs"] += len(k)
        n_valid = len(k) if all_valid else int(valid.sum())
        self.stats["valid"] += n_valid
        if n_valid < len(k):  # some output invalid: count its reasons (one pass, not one per reason)
            counts = np.bincount(reason[reason > 0], minlength=len(REASONS)).tolist()
            for code in range(1, len(REASONS)):
                self.stats["reasons"][REASONS[code]] += counts[code]
        return OutputBlock(t, abp, valid, reason, beats)

    def _keyed_rows(self, rows: list[dict]) -> list[dict]:
        """Keyer rows -> beat rows on the output time axis, cuff calibration applied."""
        out = []
        for r in rows:
            row = {"t": (r["m"] - self.res_delay) / self.fs + self.t_base, "sbp": r["sbp"], "dbp": r["dbp"], "map": r["map"],
                   "hr": r["hr"], "valid": bool(r["valid"]), "reason": "ok" if r["valid"] else r["reason"]}
            if self.features:
                row.update({k: r[k] for k in WAVE_FEATURES if k in r})
            self._calibrate_row(row)
            out.append(row)
        self.stats["beats"] += sum(1 for r in out if r["valid"])
        self.stats["beats_invalid"] += sum(1 for r in out if not r["valid"])
        return out

    def _calibrate_row(self, row: dict) -> None:
        """The estimator on one beat row (valid or not, in time order): calibrated values
        once a cuff reading applies, and the ``calibrated`` flag either way."""
        self.estimator.update(row)

    def _beats(self, abp: np.ndarray, t: np.ndarray) -> list[dict]:
        b, self.beat_state = self.beat_det.process(abp, self.beat_state)
        return self._beat_rows(b, t)

    def _beat_rows(self, b: Beats, t: np.ndarray) -> list[dict]:
        rows = []
        if len(b) == 0:
            return rows
        base = self._beat_k0
        for i in range(len(b)):
            if not bool(b.valid[i]):
                continue
            ts = float(b.i_sys[i] - base) / self.fs
            row = {"t": ts + self._beat_t0, "sbp": float(b.sbp[i]), "dbp": float(b.dbp[i]), "map": float(b.map[i]),
                   "hr": float(60.0 * self.fs / max(int(b.i_end[i] - b.i_dia[i]), 1)), "valid": True, "reason": "ok"}
            self._calibrate_row(row)
            rows.append(row)
        self.stats["beats"] += len(rows)
        return rows

    _beat_k0 = 0

    @property
    def _beat_t0(self) -> float:
        # beat indices count model-rate outputs since the detector's state began
        return self.t_base - (self.delay + self.res_delay) / self.fs

    def flush(self) -> OutputBlock:
        """End of stream (or of a boot): run the model on the samples still waiting for a
        whole chunk/hop, so every device sample gets its output row, then emit the beat
        still pending in the detector. Call :meth:`reset` before pushing again."""
        if self._held_n:  # held samples never complete a step: this only moves them to pending
            self._process(*self._held_take())
        out = OutputBlock.empty()
        n = self.pending_x.shape[1]
        if n:
            xc, rc = self.pending_x, self.pending_bad
            self.pending_x, self.pending_bad = xc[:, :0], rc[:0]
            if self.streamable and n < self.chunk:
                # causal model: zeros after the last sample cannot change the outputs before it
                pad = self.chunk - n
                k, y, reason = self._run_chunk(np.concatenate([xc, np.zeros((xc.shape[0], pad), np.float32)], axis=1),
                                               np.concatenate([rc, np.full(pad, R_GAP, np.int8)]))
                k, y, reason = k[:n], y[:n], reason[:n]
                self.n_model_in -= pad
            else:
                k, y, reason = self._run_chunk(xc, rc)
            out = self._finalise([(k, y, reason)])
        if self.keyer is not None:
            if self.beat_source == "ppg":
                b, self.keyer.state = self.keyer.det.flush(self.keyer.state)
                self.keyer._intervals(zip(b.i_dia.tolist(), b.i_end.tolist(), b.i_sys.tolist(), (b.sbp - b.dbp).tolist()))
                self.keyer.release_held()
            out.beats = list(out.beats) + self._keyed_rows(self.keyer.pop(final=True))
            return out
        b, self.beat_state = self.beat_det.flush(self.beat_state)
        out.beats = list(out.beats) + self._beat_rows(b, np.zeros(0))
        return out

    def device_reset(self, t_dev: float) -> None:
        """The device restarted: its time axis restarts; outputs resume after a new warm-up."""
        self.stats["resets"] += 1
        self.t_base = t_dev
        self.reset()
