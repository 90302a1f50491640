"""The Python API: read a record, load a bundle, predict, stream, grade, in a few lines.

Everything here is a thin layer over the parts the command line uses (the readers of
:mod:`edgebp.io`, the verified bundle of :mod:`edgebp.runtime.bundle`, the streaming runtime
of :mod:`edgebp.runtime.engine` and :mod:`edgebp.runtime.run`, the grading of
:mod:`edgebp.metrics`), so a result from Python is the result ``edgebp run``/``evaluate``/
``grade`` give. No torch is needed: a bundle holds ONNX models run by ONNX Runtime.

The names are exported lazily from ``edgebp`` (``edgebp.read_record`` ...), so ``import
edgebp`` stays light; the runtime (numba, ONNX Runtime) loads on first use.

Examples
--------
>>> import edgebp
>>> from edgebp.paths import shared_data_dir
>>> rec = edgebp.read_record(shared_data_dir() / "challenge2015" / "a527l", stop_s=60)  # doctest: +SKIP
>>> model = edgebp.load_bundle("default")  # doctest: +SKIP
>>> pred = model.predict(rec)  # doctest: +SKIP
>>> edgebp.grade(pred, rec)["sbp"]["mae"]  # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np

from edgebp.record import Channel, Record

log = logging.getLogger(__name__)

__all__ = ["read_record", "load_bundle", "Bundle", "Prediction", "stream", "BlockStream", "grade", "grade_table"]

#: names :func:`load_bundle` knows besides a directory
BUNDLE_NAMES = {"default": "default_bundle", "lowlatency": "lowlatency_bundle"}
#: packet length :meth:`Bundle.predict` pushes, as ``edgebp evaluate`` does (5 samples at 250 Hz)
PACKET_S = 0.02
#: largest time difference (s) of a predicted and a reference beat that :func:`grade` pairs
#: (as ``edgebp evaluate``'s stream variants and ``edgebp grade --match nearest``)
TOLERANCE_S = 0.3
BEAT_KEYS = ("time", "sbp", "dbp", "map", "hr", "valid", "reason", "calibrated")

Source = Union[str, os.PathLike, BinaryIO, bytes, bytearray, Iterable[bytes]]


# --------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------
def read_record(path: str | os.PathLike, fs: float | None = None, channel_map: Mapping[str, str] | None = None, *,
                start_s: float | None = None, stop_s: float | None = None) -> Record:
    """Read one recording (WFDB, UCI ``.mat``, CSV, and the other formats of :mod:`edgebp.io`).

    Parameters
    ----------
    path : str or os.PathLike
        A WFDB record (with or without ``.hea``), a CSV/TSV file, a single-record ``.mat``.
    fs : float, optional
        Sampling rate in Hz; needed for CSV only.
    channel_map : dict, optional
        File label -> canonical name (``{"IR": "ppg"}``).
    start_s, stop_s : float, optional
        Keep only ``[start_s, stop_s)`` seconds from the record's start (each channel at its
        own rate); the kept part starts at time 0.

    Returns
    -------
    Record
        Channels by canonical name (``ecg``, ``ppg``, ``abp``, ``resp``), each with its rate
        and units; ``rec.get("ppg").signal`` is a float64 array, NaN where the file has a gap.

    Raises
    ------
    edgebp.io.ReadError
        (a ``ValueError``) naming the file and what is wrong with it.

    Examples
    --------
    >>> import tempfile, edgebp
    >>> from pathlib import Path
    >>> f = Path(tempfile.mkdtemp()) / "log.csv"
    >>> _ = f.write_text("Pleth,II\\n" + "".join(f"{i},{i / 10}\\n" for i in range(250)))
    >>> rec = edgebp.read_record(f, fs=125, stop_s=1.0)
    >>> rec.names, len(rec.get("ppg").signal)
    (['ppg', 'ecg'], 125)
    """
    from edgebp.io import read_record as _read

    rec = _read(path, fs=fs, channel_map=channel_map)
    if start_s is None and stop_s is None:
        return rec
    a = float(start_s or 0.0)
    b = float("inf") if stop_s is None else float(stop_s)
    if not (a >= 0 and b > a):
        raise ValueError(f"{path}: start_s={start_s!r}, stop_s={stop_s!r}: need 0 <= start_s < stop_s")
    chans = []
    for c in rec.channels:
        i0 = int(round(a * c.fs))
        i1 = len(c.signal) if not np.isfinite(b) else min(len(c.signal), int(round(b * c.fs)))
        chans.append(Channel(c.name, c.signal[i0:i1].copy(), c.fs, c.units, c.label, c.lead))
    if all(len(c.signal) == 0 for c in chans):
        raise ValueError(f"{path}: nothing in [{a:g}, {b:g}) s (the record lasts {rec.duration:g} s)")
    return Record(rec.record_id, chans, subject_id=rec.subject_id, source=rec.source)


# --------------------------------------------------------------------------------------------
# predictions
# --------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """What a bundle says about one record.

    Attributes
    ----------
    t : ndarray
        Output times (s) on the record's own time axis (0 = its first sample), at ``fs``.
    abp : ndarray
        Point-wise arterial pressure (mmHg); NaN where ``valid`` is False.
    valid : ndarray of bool
    reason : ndarray of str
        ``ok`` or why an output is not valid (``warmup``, ``gap``, ``flat``, ``clipped``,
        ``reset``, ``artefact``).
    beats : dict of ndarray
        One entry per beat, the columns of ``edgebp run``'s beats file: ``time``, ``sbp``,
        ``dbp``, ``map`` (mmHg), ``hr`` (bpm), ``valid``, ``reason``, ``calibrated``.
    fs : float
        The model's output rate (Hz).
    record_id, subject_id : str
    what : str
        The model file that produced it and how (variant, runtime, packets).
    train_mean : dict
        The training set's mean SBP/DBP (mmHg) from the bundle: the naive baseline
        :func:`grade` shows beside the model.
    """

    t: np.ndarray
    abp: np.ndarray
    valid: np.ndarray
    reason: np.ndarray
    beats: dict[str, np.ndarray]
    fs: float
    record_id: str = ""
    subject_id: str = ""
    what: str = ""
    train_mean: dict[str, float] = field(default_factory=dict)

    @property
    def valid_beats(self) -> dict[str, np.ndarray]:
        """The beats with ``valid`` True (the ones :func:`grade` grades)."""
        keep = np.asarray(self.beats["valid"], bool)
        return {k: np.asarray(v)[keep] for k, v in self.beats.items()}

    def __repr__(self) -> str:
        nb = int(np.count_nonzero(self.beats["valid"])) if len(self.beats["valid"]) else 0
        share = float(np.mean(self.valid)) * 100 if len(self.valid) else 0.0
        return (f"Prediction({self.record_id!r}: {len(self.t)} outputs at {self.fs:g} Hz, {share:.1f} % valid, "
                f"{nb} valid beats of {len(self.beats['valid'])}; {self.what})")


def _beats_table(rows: list[dict]) -> dict[str, np.ndarray]:
    """Engine beat rows -> columns (the writer's field rules: :func:`edgebp.runtime.run.beat_fields`)."""
    from edgebp.runtime.run import beat_fields

    f = [beat_fields(b) for b in rows]
    return {
        "time": np.array([r["t"] for r in f], float), "sbp": np.array([r["sbp"] for r in f], float),
        "dbp": np.array([r["dbp"] for r in f], float), "map": np.array([r["map"] for r in f], float),
        "hr": np.array([r["hr"] for r in f], float), "valid": np.array([r["valid"] for r in f], bool),
        "reason": np.array([r["reason"] for r in f], dtype=object), "calibrated": np.array([bool(r.get("calibrated")) for r in f], bool),
    }


class Bundle:
    """A verified deployment bundle (sha256 of every file checked) ready to predict and stream.

    Made by :func:`load_bundle`. ``runtime_bundle`` is the :class:`edgebp.runtime.bundle.Bundle`
    the streaming runtime takes; ``manifest`` its manifest (inputs, rates, delays, hashes).
    """

    def __init__(self, runtime_bundle: Any):
        self.runtime_bundle = runtime_bundle
        self.manifest: dict = runtime_bundle.manifest
        self.path = Path(runtime_bundle.path)

    @property
    def inputs(self) -> list[str]:
        """The channels the model reads, in order (``["ppg", "ecg"]``)."""
        return list(self.manifest["inputs"])

    @property
    def fs(self) -> float:
        """The model's rate (Hz); inputs at other rates are resampled by the runtime."""
        return float(self.manifest["fs"])

    @property
    def train_mean(self) -> dict[str, float]:
        norm = self.manifest.get("normalisation") or {}
        return {k: float(norm[f"{k}_mean"]) for k in ("sbp", "dbp", "map") if f"{k}_mean" in norm}

    def __repr__(self) -> str:
        m = self.manifest["model"]
        return f"Bundle({self.path.name}: {m.get('name')}/{m.get('preset')}, inputs {','.join(self.inputs)} at {self.fs:g} Hz)"

    def predict(self, record: Record, variant: str = "int8", packet_s: float = PACKET_S) -> Prediction:
        """Run a whole record through the deployed path, offline.

        The record's input channels go, in packets of ``packet_s`` seconds at their own rate
        (the fastest input's; a slower one is interpolated onto it), through a fresh
        :class:`edgebp.runtime.engine.StreamRuntime`: the bundle's preprocessing chain, the
        input gates, the external-state *streaming* model stepped in its fixed chunk on ONNX
        Runtime, and the beats keyed to the input's pulses. This is what ``edgebp run`` runs
        and what ``edgebp evaluate BUNDLE`` scores by default (``--variant stream-int8``); only
        the byte decoder is skipped (the samples are handed over as it would hand them). No
        cuff reading is given: the values are the model's own, uncalibrated.

        Parameters
        ----------
        record : Record
            Must have every channel in :attr:`inputs` (``rec.names`` lists what it has).
        variant : str
            ``int8`` (deployed, default) or ``fp32``: which streaming model file.
        packet_s : float
            Seconds per push (0.02 = a device's 20 ms packets). Outputs do not depend on it.

        Returns
        -------
        Prediction

        Examples
        --------
        >>> import edgebp
        >>> from edgebp.paths import shared_data_dir
        >>> rec = edgebp.read_record(shared_data_dir() / "challenge2015" / "a527l", stop_s=60)  # doctest: +SKIP
        >>> edgebp.load_bundle("default").predict(rec)  # doctest: +SKIP
        Prediction('a527l': 7500 outputs at 125 Hz, ...)
        """
        from edgebp.runtime.bundle import file_sha256
        from edgebp.runtime.engine import REASONS
        from edgebp.runtime.stream_score import stream_record

        if variant not in ("int8", "fp32"):
            raise ValueError(f"variant must be 'int8' or 'fp32', got {variant!r}")
        missing = [c for c in self.inputs if not record.has(c)]
        if missing:
            raise ValueError(f"record {record.record_id!r} has no {', '.join(missing)} channel (the model needs "
                             f"{', '.join(self.inputs)}; it has {', '.join(record.names) or 'none'})")
        out = stream_record(self.runtime_bundle, record, variant=variant, packet_s=packet_s)
        key = self.manifest["streaming"]["file_keys"][variant]
        f = self.runtime_bundle.file(key)
        what = (f"{f.name} (sha256 {file_sha256(f)[:12]}) through StreamRuntime on ONNX Runtime, "
                f"{out['packet_samples']}-sample packets at {out['device_fs']:g} Hz")
        return Prediction(t=out["t"], abp=np.where(out["valid"], out["abp"], np.nan), valid=np.asarray(out["valid"], bool),
                          reason=np.asarray(REASONS, dtype=object)[np.asarray(out["reason"], int)], beats=_beats_table(out["beats"]),
                          fs=float(out["fs"]), record_id=record.record_id, subject_id=str(record.subject_id), what=what,
                          train_mean=self.train_mean)


def load_bundle(name_or_path: str | os.PathLike = "default", verify: bool = True) -> Bundle:
    """Open and verify a bundle: ``"default"``, ``"lowlatency"`` (both shipped in the package) or a
    directory written by ``edgebp export``.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        ``"default"`` (int8 edge-tcn, 452 ms from sample to estimate), ``"lowlatency"``
        (92 ms) or a bundle directory.
    verify : bool
        Check every file's sha256 against the manifest (default; refuses a tampered bundle).

    Returns
    -------
    Bundle

    Raises
    ------
    edgebp.runtime.bundle.BundleError
        (a ``ValueError``) naming the file and the problem.

    Examples
    --------
    >>> import edgebp
    >>> b = edgebp.load_bundle("default")
    >>> b.inputs, b.fs
    (['ppg', 'ecg'], 125.0)
    """
    from edgebp.paths import ASSETS
    from edgebp.runtime.bundle import bundle_load

    key = str(name_or_path)
    path: str | Path = ASSETS / BUNDLE_NAMES[key] if key in BUNDLE_NAMES else Path(name_or_path)
    return Bundle(bundle_load(path, verify=verify))


# --------------------------------------------------------------------------------------------
# streams
# --------------------------------------------------------------------------------------------
def _chunks_of(source: Source, read_size: int) -> Iterator[bytes]:
    """Byte chunks from a path, a binary (or text) file object, bytes, or an iterable of chunks."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield bytes(source)
        return
    if isinstance(source, (str, os.PathLike)):
        from edgebp.runtime.sources import iter_file

        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(2, "no such stream file", str(p))
        yield from iter_file(p, chunk=read_size)
        return
    if hasattr(source, "read"):
        while True:
            data = source.read(read_size)
            if not data:
                return
            yield data.encode() if isinstance(data, str) else bytes(data)
    for data in source:
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"stream: a chunk must be bytes, got {type(data).__name__}")
        yield bytes(data)


class _Stopped(Exception):
    """The consumer closed the stream: the worker stops handing blocks over."""


class BlockStream:
    """An iterator of :class:`edgebp.runtime.engine.OutputBlock` from :func:`stream`.

    Each block holds the point-wise outputs of one step (``t``, ``abp``, ``valid``,
    ``reason`` codes: ``edgebp.runtime.engine.REASONS[code]``) and the beats it completed
    (``beats``: dicts ``t``, ``sbp``, ``dbp``, ``map``, ``hr``, ``valid``, ``reason``,
    ``calibrated``). After the last block :attr:`summary` holds the end-of-stream accounting
    of ``edgebp run`` (samples parsed / rejected / missing, outputs, valid share, beats,
    real-time factor). Use it in a ``for`` loop or a ``with`` block; :meth:`close` (or
    leaving the ``with``) ends the stream early.
    """

    def __init__(self, run, max_blocks: int = 256):
        # the runtime's loop (edgebp.runtime.run.stream_process, the one edgebp run uses)
        # pushes blocks; a worker thread runs it and a bounded queue hands blocks to the
        # consumer, so a slow consumer holds the producer back instead of growing memory
        self._q: queue.Queue = queue.Queue(maxsize=max_blocks)
        self._stop = threading.Event()
        self._done = False
        self.summary: dict | None = None
        self._thread = threading.Thread(target=self._work, args=(run,), name="edgebp-stream", daemon=True)
        self._thread.start()

    def _put(self, item) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def write(self, out) -> None:  # the writer interface of stream_process
        if len(out.t) or out.beats:
            self._put(("block", out))

    def _work(self, run) -> None:
        try:
            summary = run(self, self._stop.is_set)
            self._put(("end", summary))
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            try:
                self._put(("error", exc))
            except _Stopped:
                pass

    def __iter__(self) -> "BlockStream":
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        kind, value = self._q.get()
        if kind == "block":
            return value
        self._done = True
        self._thread.join()
        if kind == "error":
            raise value
        self.summary = value
        raise StopIteration

    def close(self) -> None:
        """End the stream now (the worker stops after the chunk it is on)."""
        if not self._done:
            self._done = True
            self._stop.set()
            self._thread.join()

    def __enter__(self) -> "BlockStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()


def stream(bundle: Bundle | str | os.PathLike, source: Source, *, fs: float | None = None, fmt: str = "auto",
           channel_map: Mapping[str, str] | None = None, variant: str = "int8", calibration: str | os.PathLike | None = None,
           calibration_method: str = "auto", read_size: int = 65536, beat_source: str = "auto") -> BlockStream:
    """Stream a device log through a bundle, as ``edgebp run`` does, block by block.

    The bytes go through the same decoder (edgebp's text or binary protocol, or a third-party
    log with ``fs`` and ``channel_map``), gap handling, runtime and accounting as ``edgebp
    run``: a bad frame is counted and skipped, a gap is reported in the outputs' ``reason``
    and the stream goes on.

    Parameters
    ----------
    bundle : Bundle or str
        From :func:`load_bundle`, or a name/path it takes.
    source : path, file object, bytes or iterable of bytes
        A log file path; a file object opened ``"rb"`` (read ``read_size`` bytes at a time);
        the whole log as bytes; or any iterable of byte chunks (a socket reader, a serial
        port's reads).
    fs : float, optional
        Sampling rate of a log without a header (never guessed).
    fmt : str
        ``auto`` (edgebp's own formats are detected), ``text``, ``binary``, ``max3010x``, ``csv``.
    channel_map : dict, optional
        A third-party log's fields -> channels (``{"ir": "ppg"}``).
    variant : str
        ``int8`` (deployed) or ``fp32``.
    calibration : path, optional
        Cuff readings CSV (``time,sbp,dbp``); readings inside the stream are used too.
    calibration_method : str
        ``auto``, ``estimator``, ``offset`` or ``hold`` (as ``edgebp run --calibration-method``).
    read_size : int
        Bytes per read of a path or file object. Outputs are identical for every size.
    beat_source : str
        ``auto``, ``ppg`` or ``ecg``: which input's pulses key the beats.

    Returns
    -------
    BlockStream
        Iterate it for the output blocks; ``.summary`` after the last one.

    Examples
    --------
    >>> import edgebp  # doctest: +SKIP
    >>> with edgebp.stream("default", "serial.log") as blocks:  # doctest: +SKIP
    ...     for block in blocks:
    ...         for beat in block.beats:
    ...             print(beat["t"], beat["sbp"], beat["dbp"])
    """
    from edgebp.runtime.engine import Calibration
    from edgebp.runtime.protocol import StreamDecoder
    from edgebp.runtime.run import stream_process

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if variant not in ("int8", "fp32"):
        raise ValueError(f"variant must be 'int8' or 'fp32', got {variant!r}")
    if not (isinstance(read_size, int) and read_size >= 1):
        raise ValueError(f"read_size must be a positive number of bytes, got {read_size!r}")
    cal = Calibration.from_csv(str(calibration), calibration_method) if calibration else Calibration([], calibration_method)
    decoder = StreamDecoder(fmt=fmt, fs=fs, channel_map=dict(channel_map) if channel_map else None)
    if isinstance(source, (str, os.PathLike)) and not Path(source).exists():
        raise FileNotFoundError(2, "no such stream file", str(source))
    if isinstance(source, io.TextIOBase):
        log.debug("stream: text-mode file object; its text is encoded as UTF-8")
    chunks = _chunks_of(source, read_size)

    def run(writer, stop) -> dict:
        return stream_process(chunks, b.runtime_bundle, decoder, variant=variant, calibration=cal, writer=writer, stop=stop,
                              beat_source=beat_source)

    return BlockStream(run)


# --------------------------------------------------------------------------------------------
# grading
# --------------------------------------------------------------------------------------------
def _reference_beats(record: Record) -> dict[str, np.ndarray]:
    """The reference beats of a record's ABP channel: valid beats over its usable stretches
    (the quality mask and beat detector the training labels use), times from the record start."""
    from edgebp.processing.beats import abp_beats
    from edgebp.processing.quality import abp_quality

    if not record.has("abp"):
        raise ValueError(f"record {record.record_id!r} has no abp channel to grade against (it has {', '.join(record.names) or 'none'})")
    ch = record.get("abp")
    x = np.asarray(ch.signal, float)
    usable = np.isfinite(x)
    if usable.any():
        usable &= np.asarray(abp_quality(np.where(usable, x, np.nan), ch.fs).mask, bool)[: len(x)]
    b = abp_beats(np.where(usable, x, np.nan), ch.fs)
    v = np.asarray(b.valid, bool)
    return {"time": np.asarray(b.t_sys)[v], "sbp": np.asarray(b.sbp)[v], "dbp": np.asarray(b.dbp)[v], "map": np.asarray(b.map)[v]}


def _table_of(x: Any, which: str) -> tuple[dict[str, np.ndarray], str]:
    """A beats table (columns time, sbp, dbp[, map]) from what :func:`grade` accepts, and a
    subject id (or "")."""
    if isinstance(x, Prediction):
        return x.valid_beats, x.subject_id
    if isinstance(x, Record):
        return _reference_beats(x), str(x.subject_id)
    if isinstance(x, (str, os.PathLike)):
        import click

        from edgebp.metrics_cli import SINGLE_SUBJECT, bp_csv_read

        try:
            t = bp_csv_read(x, default_subject=SINGLE_SUBJECT)
        except click.ClickException as exc:
            raise ValueError(exc.message) from None
        rows = sorted(t.rows.values(), key=lambda r: r["time"])
        cols = ("time", "sbp", "dbp") + (("map",) if t.has_map else ())
        return {c: np.array([r[c] for r in rows], float) for c in cols}, ""
    if isinstance(x, Mapping):
        if not all(k in x for k in ("time", "sbp", "dbp")):
            raise ValueError(f"grade: {which} needs columns time, sbp, dbp (it has {', '.join(map(str, x)) or 'none'})")
        out = {k: np.asarray(x[k], float) for k in ("time", "sbp", "dbp", "map") if k in x}
        if "valid" in x:
            keep = np.asarray(x["valid"], bool)
            out = {k: v[keep] for k, v in out.items()}
        n = {len(v) for v in out.values()}
        if len(n) != 1:
            raise ValueError(f"grade: {which}'s columns differ in length ({', '.join(f'{k}={len(v)}' for k, v in out.items())})")
        return out, ""
    raise TypeError(f"grade: {which} must be a Prediction, a Record, a beats CSV path or a mapping of columns, not {type(x).__name__}")


def grade(pred: Prediction | Record | Mapping | str | os.PathLike, ref: Record | Prediction | Mapping | str | os.PathLike, *,
          tolerance_s: float = TOLERANCE_S, train_mean: Mapping[str, float] | tuple[float, float] | None = None,
          unit: str = "beat") -> dict:
    """Grade beat-by-beat BP estimates against a reference, with the naive baseline beside.

    Each valid estimated beat is paired one to one with the nearest reference beat within
    ``tolerance_s`` (:func:`edgebp.pairing.beat_times_pair`, as ``edgebp grade --match
    nearest``); the pairs are graded by :func:`edgebp.metrics.bp_report`, the function
    behind ``edgebp grade`` and ``edgebp evaluate``.

    Parameters
    ----------
    pred : Prediction, Record, mapping or path
        The estimates: a :class:`Prediction` (its valid beats), a beats CSV (``edgebp run``'s
        ``bp.beats.csv``) or a mapping of arrays ``time, sbp, dbp[, map][, valid]``.
    ref : Record, mapping or path
        The reference: a :class:`Record` with an ``abp`` channel (its valid beats over the
        usable stretches, found by the training labels' quality mask and beat detector), a
        CSV or a mapping as for ``pred``. Times are seconds on the same axis as ``pred``'s.
    tolerance_s : float
        Largest time difference of a pair.
    train_mean : mapping or (sbp, dbp), optional
        The training set's mean SBP and DBP, for the training-mean baseline and MASE;
        default: the bundle's, when ``pred`` is a :class:`Prediction`.
    unit : str
        What one reading is, for the stated analysis unit.

    Returns
    -------
    dict
        As ``edgebp grade --json``: ``n_pairs``, ``unpaired`` (``pred_only``, ``ref_only``),
        ``match``; ``sbp``/``dbp``/``map`` each with ``me``, ``sd``, ``mae``, ``rmse``, ``r``,
        ``bhs`` (``grade``, ``within5/10/15``), ``aami``, ``ieee1708``; ``per_subject``;
        ``baselines`` (``training_mean`` with ``model_mase``); ``reference_distribution``.

    Examples
    --------
    >>> import numpy as np, edgebp
    >>> t = np.arange(40) * 0.8
    >>> ref = {"time": t, "sbp": 120 + 10 * np.sin(t), "dbp": 75 + 5 * np.sin(t)}
    >>> est = {"time": t + 0.05, "sbp": ref["sbp"] + 3.0, "dbp": ref["dbp"] - 2.0}
    >>> g = edgebp.grade(est, ref, train_mean=(120.0, 75.0))
    >>> g["n_pairs"], round(g["sbp"]["me"], 2), g["sbp"]["bhs"]["grade"], g["dbp"]["aami"]["criterion1"]
    (40, 3.0, 'A', True)
    """
    from edgebp.metrics import bp_report
    from edgebp.pairing import beat_times_pair

    if not (tolerance_s > 0 and np.isfinite(tolerance_s)):
        raise ValueError(f"tolerance_s must be a positive number of seconds, got {tolerance_s!r}")
    p, p_subj = _table_of(pred, "pred")
    r, r_subj = _table_of(ref, "ref")
    ip, ir = beat_times_pair(p["time"], r["time"], tolerance_s)
    if len(ip) == 0:
        raise ValueError(f"grade: no estimated beat ({len(p['time'])}) lies within {tolerance_s:g} s of a reference beat "
                         f"({len(r['time'])}); are both on the same time axis?")
    if train_mean is None and isinstance(pred, Prediction) and pred.train_mean:
        train_mean = pred.train_mean
    if train_mean is not None and not isinstance(train_mean, Mapping):
        sbp_m, dbp_m = train_mean
        train_mean = {"sbp": float(sbp_m), "dbp": float(dbp_m)}
    with_map = "map" in p and "map" in r
    subject = r_subj or p_subj or "all"
    report = bp_report(p["sbp"][ip], r["sbp"][ir], p["dbp"][ip], r["dbp"][ir], subjects=[subject] * len(ip),
                       train_ref=dict(train_mean) if train_mean is not None else None,
                       pred_map=p["map"][ip] if with_map else None, ref_map=r["map"][ir] if with_map else None, unit=unit)
    out = {"n_pairs": report.pop("n_pairs"), "unpaired": {"pred_only": int(len(p["time"]) - len(ip)), "ref_only": int(len(r["time"]) - len(ir))},
           "match": {"mode": "nearest", "tolerance_s": float(tolerance_s)}}
    out.update(report)
    return out


def grade_table(report: Mapping) -> str:
    """The clinical table of a :func:`grade` result, as ``edgebp grade`` prints it.

    Examples
    --------
    >>> import numpy as np, edgebp
    >>> t = np.arange(30.0)
    >>> g = edgebp.grade({"time": t, "sbp": 121 + 0 * t, "dbp": 80 + 0 * t}, {"time": t, "sbp": 120 + t % 3, "dbp": 79 + t % 2})
    >>> "BHS" in edgebp.grade_table(g)
    True
    """
    from edgebp.metrics import format_report_table

    return format_report_table(dict(report))
