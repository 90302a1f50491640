"""The simulated wearable, end to end: source -> clock -> front-ends -> firmware -> UART.

Pipeline of :func:`device_simulate`
-----------------------------------
1. Tick times of the device's frame clock on the source's time axis (ppm error, jitter).
2. Reboot ticks (after each ``reset``) are removed: the device takes no sample then.
3. The source ECG/PPG/ABP are interpolated at the true tick times; the front-ends and
   ADCs turn ECG and PPG into codes, with the state faults (motion, lead-off, saturation,
   flat) applied (see :mod:`edgebp.firmware_sim.device`).
4. The firmware numbers each sampled frame (uint16 ``seq``, restarting at 0 after a reset),
   applies ``drop``, encodes the frame with :mod:`edgebp.runtime.protocol` (a header first
   at every boot, except in MAX3010x mode), applies ``truncate`` and ``dup``, and hands the
   bytes to the UART.
5. The UART's transmit buffer drops whole frames when full; resets clear it
   (:mod:`edgebp.firmware_sim.uart`). ``corrupt`` alters one byte of a frame on the wire.
6. With a :class:`~edgebp.firmware_sim.cuff.CuffSpec`, cuff readings (the mean truth-beat
   SBP/DBP over the cuff's measurement window) go into the stream before the first sample at
   or after their time, through the same UART (faults hit sample frames only).

Everything random comes from ``seed`` through separate streams per purpose, so a run is
reproducible and adding one fault does not change the draws of another.

Examples
--------
>>> import numpy as np
>>> from edgebp.record import Channel, Record
>>> fs = 250.0
>>> t = np.arange(int(20 * fs)) / fs
>>> rec = Record("toy", [Channel("ecg", np.sin(2 * np.pi * t), fs, "mV"),
...                      Channel("ppg", np.sin(2 * np.pi * t - 1), fs, "NU"),
...                      Channel("abp", 95 + 25 * np.sin(2 * np.pi * t - 1.2), fs, "mmHg")])
>>> res = device_simulate(rec, faults="drop=0.05", fmt="text", seed=1)
>>> s = res.summary
>>> s["frames_generated"] == s["frames_emitted"] + s["frames_dropped_fault"], s["frames_dropped_overflow"]
(True, 0)
>>> res.stream.splitlines()[1]
b'0,38,143055'
>>> res.truth["status"][:3].tolist(), len(res.beats["sbp_mmHg"])
(['emitted', 'emitted', 'emitted'], 18)
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgebp.firmware_sim.cuff import CuffSpec, cuff_readings, cuff_schedule
from edgebp.firmware_sim.device import (
    AdcChannel,
    DeviceConfig,
    FrontEndInput,
    adc_channels,
    clock_ppm_resolve,
    clock_ticks,
    frontend_convert,
    source_sample,
)
from edgebp.firmware_sim.faults import (
    DEFAULT_REBOOT_S,
    FAULT_BITS,
    FaultSpec,
    fault_rng,
    faults_frame_mask,
    faults_parse,
    faults_schedule,
    faults_state_mask,
)
from edgebp.firmware_sim.truth import beats_truth, fault_names, summary_write, truth_write
from edgebp.firmware_sim.uart import uart_schedule
from edgebp.record import Record

if TYPE_CHECKING:
    from edgebp.firmware_sim.device_bp import FirmwareHost

log = logging.getLogger(__name__)

FORMATS = ("text", "binary", "max3010x")
SEQ_MOD = 1 << 16
_ITEM_HEADER, _ITEM_FRAME, _ITEM_DUP, _ITEM_CUFF, _ITEM_BP = 0, 1, 2, 3, 4


@dataclass
class SimResult:
    """A finished simulation: the wire bytes with their times, the truth, and the counts."""

    chunks: list[bytes]
    chunk_times: np.ndarray  # s from the simulation start, when each chunk's last byte left
    truth: dict[str, np.ndarray]
    beats: dict[str, np.ndarray]
    summary: dict
    channels: list[AdcChannel]
    header: object | None = None
    fmt: str = "text"
    #: Cuff readings sent (with a CuffSpec): ``time`` (truth axis, s), ``sbp``, ``dbp``
    #: (mmHg), ``n_beats`` (beats averaged), ``tick`` (the sample it precedes), ``status``
    #: (``emitted``, ``truncated``, ``overflow``, ``reset_lost``).
    cuff: dict | None = None
    #: With ``firmware``: what the device's firmware computed (per output: ``boot``, ``k``,
    #: ``tick``, ``abp_mmHg``, ``record``, ``status`` of its record on the wire).
    device_bp: dict | None = None

    @property
    def stream(self) -> bytes:
        """All bytes the device put on the wire, in order."""
        return b"".join(self.chunks)


def sim_source_load(spec: str, minutes: float | None = None, source_seed: int = 0,
                    source_fs: float | None = None) -> Record:
    """Load the simulator's source: ``synth:SUBJECT`` or ``record:PATH``.

    Parameters
    ----------
    spec : str
        ``synth:12`` (subject 12 of the synthetic cohort, :func:`edgebp.synth.synth_record`)
        or ``record:path/to/a123l`` (a WFDB record, or any file :func:`edgebp.io.read_record`
        reads, with ECG and/or PPG and ABP).
    minutes : float, optional
        Length to synthesise (default 5 min for ``synth``; a record is read whole).
    source_seed : int
        Cohort seed for ``synth`` (0 = the project's standard cohort).
    source_fs : float, optional
        Sampling rate of a ``record:`` file that does not state one (CSV).

    Returns
    -------
    Record

    Raises
    ------
    ValueError
        For a spec of another form, naming the two valid ones.
    """
    m = re.match(r"^(synth|record):(.+)$", spec.strip())
    if not m:
        raise ValueError(f"--source {spec!r}: expected synth:SUBJECT (e.g. synth:3) or record:PATH")
    kind, arg = m.group(1), m.group(2)
    if kind == "synth":
        try:
            subject = int(arg)
        except ValueError:
            raise ValueError(f"--source {spec!r}: the subject must be an integer, e.g. synth:3") from None
        if subject < 0:
            raise ValueError(f"--source {spec!r}: the subject must be >= 0")
        from edgebp.synth import synth_record

        mins = 5.0 if minutes is None else float(minutes)
        # a little extra so a slow device clock still finds source samples for every tick
        return synth_record(subject, mins + 0.1, seed=source_seed)
    from edgebp.io import read_record

    return read_record(arg, fs=source_fs)


def _channel(record: Record, name: str, purpose: str):
    if not record.has(name):
        raise ValueError(
            f"record {record.record_id!r} has no {name.upper()} channel, needed for {purpose} "
            f"(it has: {', '.join(f'{c.name}[{c.label}]' for c in record.channels) or 'none'})"
        )
    return record.get(name)


def _encode_frames(fmt: str, seq: np.ndarray, codes: np.ndarray) -> list[bytes]:
    """One bytes object per frame, via the protocol module's encoders."""
    from edgebp.runtime import protocol

    n = len(seq)
    if n == 0:
        return []
    if fmt == "max3010x":
        data = protocol.samples_encode_max3010x(codes[:, 0], codes[:, 1])
        return _split_lines(data, n, lambda i: protocol.samples_encode_max3010x(codes[i:i + 1, 0], codes[i:i + 1, 1]))
    if fmt == "text":
        data = protocol.samples_encode_text(seq, codes)
        return _split_lines(data, n, lambda i: protocol.samples_encode_text(seq[i:i + 1], codes[i:i + 1]))
    data = protocol.samples_encode_binary(seq, codes)
    size = len(protocol.samples_encode_binary(seq[:1], codes[:1]))
    if size * n == len(data):
        return [data[i * size:(i + 1) * size] for i in range(n)]
    log.debug("binary frames differ in size; encoding frame by frame")
    return [protocol.samples_encode_binary(seq[i:i + 1], codes[i:i + 1]) for i in range(n)]


def _split_lines(data: bytes, n: int, one) -> list[bytes]:
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    if len(parts) == n:
        return [p + b"\n" for p in parts]
    log.debug("encoder output is not one line per frame; encoding frame by frame")
    return [one(i) for i in range(n)]


def _header(cfg: DeviceConfig, chans: list[AdcChannel]):
    from edgebp.runtime.protocol import StreamHeader

    return StreamHeader(
        fs=cfg.fs, channels=[c.name for c in chans], units=[c.units for c in chans],
        adc_bits=[c.bits for c in chans], gain=[c.gain for c in chans], offset=[c.offset for c in chans],
        version=1, device=cfg.device,
    )


def device_simulate(
    record: Record,
    cfg: DeviceConfig | None = None,
    faults: FaultSpec | str | None = None,
    fmt: str = "text",
    baud: int = 115200,
    buffer_bytes: int = 512,
    minutes: float | None = None,
    start_s: float = 0.0,
    seed: int = 0,
    cuff: CuffSpec | None = None,
    seq_start: int = 0,
    send_header: bool = True,
    firmware: "FirmwareHost | None" = None,
) -> SimResult:
    """Simulate the wearable recording ``record`` and streaming it over a UART.

    Parameters
    ----------
    record : Record
        Source with ABP (the truth) and the channels the device measures (ECG, PPG).
    cfg : DeviceConfig, optional
        Hardware (frame rate, ADCs, clock); defaults to ECG + PPG at 250 Hz. In
        ``max3010x`` format the channels are red and IR.
    faults : FaultSpec or str, optional
        Fault specification (see :mod:`edgebp.firmware_sim.faults`).
    fmt : {"text", "binary", "max3010x"}
        Serial encoding (from :mod:`edgebp.runtime.protocol`).
    baud : int
        UART rate (8N1); 0 = unlimited.
    buffer_bytes : int
        UART transmit buffer.
    minutes : float, optional
        Length to simulate (default: as much of the source as there is after ``start_s``).
    start_s : float
        Where on the source's time axis the device starts.
    seed : int
        Seed of every random draw (clock, noise, faults).
    cuff : CuffSpec, optional
        Cuff readings to put into the stream (text or binary format); see
        :mod:`edgebp.firmware_sim.cuff`.
    seq_start : int
        Sequence number of the first frame (a device already running: :func:`device_stream`
        continues one segment's numbering in the next). Frames after a reset start at 0.
    send_header : bool
        Send the header at the first boot (False: the segment continues a stream whose
        header was sent already; headers after a reset are sent either way).
    firmware : FirmwareHost, optional
        The generated firmware's host build (:func:`edgebp.firmware_sim.device_bp.firmware_host_open`):
        the device computes its own BP with it and sends it as device-BP records after the
        frame whose push produced them (text or binary format; see
        :mod:`edgebp.firmware_sim.device_bp`). Without it nothing changes.

    Returns
    -------
    SimResult

    Raises
    ------
    ValueError
        Unknown format, missing channels, nothing to simulate, a frame larger than the
        transmit buffer, or cuff readings that cannot be placed (MAX3010x format, a time
        after the last sample).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: valid formats are {', '.join(FORMATS)}")
    cfg = cfg or DeviceConfig()
    if fmt == "max3010x" and cfg.channels != ("red", "ir"):
        log.info("max3010x format: device channels set to red, ir (was %s)", ",".join(cfg.channels))
        cfg = dataclasses.replace(cfg, channels=("red", "ir"))
    spec = faults if isinstance(faults, FaultSpec) else faults_parse(faults)
    if cuff is not None and cuff.active and fmt == "max3010x":
        raise ValueError("cuff readings (--cuff-every/--cuff-at) need --format text or binary: "
                         "MAX3010x lines have no place for them")
    if firmware is not None and fmt == "max3010x":
        raise ValueError("--firmware needs --format text or binary: MAX3010x lines have no place for the device's BP")
    if baud < 0 or buffer_bytes <= 0:
        raise ValueError(f"baud must be >= 0 and buffer_bytes > 0 (got {baud}, {buffer_bytes})")
    chans = adc_channels(cfg)

    # --- source ---
    abp_ch = _channel(record, "abp", "the true blood pressure")
    need_ecg = "ecg" in cfg.channels
    need_ppg = any(c in cfg.channels for c in ("ppg", "red", "ir"))
    ecg_ch = _channel(record, "ecg", "the ECG front-end") if need_ecg else None
    ppg_ch = _channel(record, "ppg", "the PPG front-end") if need_ppg else None
    used = [c for c in (abp_ch, ecg_ch, ppg_ch) if c is not None]
    src_end = min((len(c.signal) - 1) / c.fs for c in used)
    if start_s < 0 or start_s >= src_end:
        raise ValueError(f"--start {start_s} s is outside the source {record.record_id!r} (0..{src_end:.1f} s)")
    span = src_end - start_s if minutes is None else min(minutes * 60.0, src_end - start_s)
    if minutes is not None and minutes * 60.0 > src_end - start_s + 1e-9:
        log.warning("source %s has only %.1f s after %.1f s; simulating %.1f s instead of %.1f min",
                    record.record_id, src_end - start_s, start_s, span, minutes)
    n = int(np.floor(span * cfg.fs))
    ppm = clock_ppm_resolve(cfg, seed)
    cfg_clock = dataclasses.replace(cfg, clock_ppm=ppm)
    t_true = clock_ticks(cfg_clock, n, seed=seed, start_s=start_s)
    n = int(np.searchsorted(t_true, src_end, side="right"))
    t_true = t_true[:n]
    if n < 2:
        raise ValueError(f"nothing to simulate: source {record.record_id!r} gives {n} sample(s)")
    td = t_true - start_s  # device time since power-up, the axis of the fault schedule
    duration = n / cfg.fs
    log.info("simulating %s: %d ticks (%.1f s) at %g Hz, clock %+.1f ppm, format %s",
             record.record_id, n, duration, cfg.fs, ppm, fmt)

    # --- faults ---
    schedule = faults_schedule(spec, duration, seed)
    late = [e for e in schedule.events if e.start_s >= duration]
    for e in late:
        log.warning("fault %s@%gs is after the end of the simulation (%.1f s): ignored", e.name, e.start_s, duration)
    schedule.events = [e for e in schedule.events if e.start_s < duration]
    resets = [e for e in schedule.events if e.name == "reset"]
    reboot = np.zeros(n, dtype=bool)
    boot = np.zeros(n, dtype=np.int64)
    for e in resets:
        d = DEFAULT_REBOOT_S if e.duration_s is None else e.duration_s
        i0, i1 = np.searchsorted(td, [e.start_s, e.start_s + d], side="left")
        reboot[i0:i1] = True
        boot[i0:] += 1
    sampled = ~reboot
    masks = {k: faults_state_mask(schedule.events, k, td) for k in ("saturate", "leadoff", "motion", "flat")}

    # --- per-beat truth on the source axis ---
    i0 = max(0, int(np.floor(t_true[0] * abp_ch.fs)))
    i1 = int(np.ceil(t_true[-1] * abp_ch.fs)) + 1
    beats = beats_truth(abp_ch.signal[i0:i1], abp_ch.fs, t0=i0 / abp_ch.fs)
    readings = _cuff_plan(cuff, beats, td, sampled, start_s, seed) if cuff is not None and cuff.active else None

    ecg = source_sample(ecg_ch.signal, ecg_ch.fs, t_true) if ecg_ch is not None else None
    ppg = source_sample(ppg_ch.signal, ppg_ch.fs, t_true) if ppg_ch is not None else None
    abp = source_sample(abp_ch.signal, abp_ch.fs, t_true)
    gap = np.zeros(n, dtype=bool)
    for x in (ecg, ppg):
        if x is not None:
            gap |= ~np.isfinite(x)
    masks["source_gap"] = gap
    ppg_scale = (0.0, 1.0)
    if ppg_ch is not None:
        i0, i1 = max(0, int(start_s * ppg_ch.fs)), int(np.ceil(t_true[-1] * ppg_ch.fs)) + 1
        seg = ppg_ch.signal[i0:i1]
        seg = seg[np.isfinite(seg)]
        if len(seg) == 0:
            raise ValueError(f"source {record.record_id!r}: the PPG has no finite samples in the simulated span")
        ppg_scale = (float(np.percentile(seg, 5)), float(np.percentile(seg, 95)))
    codes = frontend_convert(cfg, FrontEndInput(ecg=ecg, ppg=ppg, ppg_scale=ppg_scale, masks=masks), n, seed)

    drop = faults_frame_mask(schedule, "drop", td, seed, eligible=sampled)
    trunc = faults_frame_mask(schedule, "truncate", td, seed, eligible=sampled & ~drop)
    dup = faults_frame_mask(schedule, "dup", td, seed, eligible=sampled & ~drop)
    corrupt_draw = faults_frame_mask(schedule, "corrupt", td, seed, eligible=sampled & ~drop)

    # --- firmware: sequence numbers per boot, encoding ---
    seq = np.full(n, -1, dtype=np.int64)
    for b in np.unique(boot[sampled]):
        idx = np.flatnonzero(sampled & (boot == b))
        seq[idx] = (np.arange(len(idx)) + (int(seq_start) if b == 0 else 0)) % SEQ_MOD
    dev_bp = None
    bp_at: dict[int, list[int]] = {}
    if firmware is not None:
        from edgebp.firmware_sim.device_bp import device_bp_compute

        dev_bp = device_bp_compute(firmware, codes, chans, sampled, boot)
        for r, k in enumerate(dev_bp.records["tick"].tolist()):
            bp_at.setdefault(int(k), []).append(r)
    send = np.flatnonzero(sampled & ~drop)
    log.info("encoding %d frames", len(send))
    frames = _encode_frames(fmt, seq[send], codes[send])
    header = None
    header_bytes = b""
    if fmt != "max3010x":
        from edgebp.runtime import protocol

        header = _header(cfg, chans)
        enc = protocol.header_encode_text if fmt == "text" else protocol.header_encode_binary
        header_bytes = enc(header)
    frame_len = max((len(f) for f in frames), default=0)
    if frame_len + len(header_bytes) > buffer_bytes and baud > 0:
        raise ValueError(
            f"--buffer {buffer_bytes} bytes cannot hold one frame ({frame_len} bytes) after the header "
            f"({len(header_bytes)} bytes)"
        )
    bp_bytes: list[bytes] = []
    if dev_bp is not None:
        from edgebp.firmware_sim.device_bp import device_bp_encode

        bp_bytes = [device_bp_encode(dev_bp, r, fmt, int(seq[int(k)])) for r, k in enumerate(dev_bp.records["tick"].tolist())]
        bp_len = max((len(b) for b in bp_bytes), default=0)
        if bp_len + frame_len + len(header_bytes) > buffer_bytes and baud > 0:
            raise ValueError(f"--buffer {buffer_bytes} bytes cannot hold a device-BP record ({bp_len} bytes) with a frame "
                             f"and the header ({frame_len} + {len(header_bytes)} bytes); give a larger --buffer")
    bp_item = np.zeros(len(bp_bytes), dtype=np.int64)

    # --- wire items in offer order: [header at each boot], frame, [its duplicate] ---
    trunc_rng = fault_rng(seed, "truncate_len")
    item_kind: list[int] = []
    item_tick: list[int] = []
    item_bytes: list[bytes] = []
    item_ready: list[float] = []
    first_of_boot = set()
    if header is not None:
        for b in np.unique(boot[sampled]):
            if b == 0 and not send_header:
                continue
            first_of_boot.add(int(np.flatnonzero(sampled & (boot == b))[0]))
    send_pos = {int(k): j for j, k in enumerate(send)}
    cuff_at: dict[int, list[int]] = {}
    if readings is not None:
        for r, k in enumerate(readings["tick"].tolist()):
            cuff_at.setdefault(int(k), []).append(r)
    cuff_item = np.zeros(0 if readings is None else len(readings["tick"]), dtype=np.int64)
    if readings is not None:
        from edgebp.runtime import protocol
    last_seq = 0  # the seq of the last sample frame handed to the UART (the cuff frame's SEQ)
    for k in np.flatnonzero(sampled).tolist():
        if k in first_of_boot:
            item_kind.append(_ITEM_HEADER)
            item_tick.append(k)
            item_bytes.append(header_bytes)
            item_ready.append(td[k])
        for r in cuff_at.get(k, ()):
            sbp, dbp = float(readings["sbp"][r]), float(readings["dbp"][r])
            cuff_item[r] = len(item_kind)
            item_kind.append(_ITEM_CUFF)
            item_tick.append(k)
            item_bytes.append(protocol.cuff_encode_text(sbp, dbp) if fmt == "text"
                              else protocol.cuff_encode_binary(sbp, dbp, last_seq))
            item_ready.append(td[k])
        j = send_pos.get(k)
        if j is not None:
            last_seq = int(seq[k])
            fb = frames[j]
            if trunc[k]:
                fb = fb[: int(trunc_rng.integers(1, len(fb)))] if len(fb) > 1 else b""
            item_kind.append(_ITEM_FRAME)
            item_tick.append(k)
            item_bytes.append(fb)
            item_ready.append(td[k])
            if dup[k]:
                item_kind.append(_ITEM_DUP)
                item_tick.append(k)
                item_bytes.append(fb)
                item_ready.append(td[k])
        # the firmware's outputs of this sample's push follow its frame (also when the frame
        # itself was dropped: the device computed them all the same)
        for r in bp_at.get(k, ()):
            bp_item[r] = len(item_kind)
            item_kind.append(_ITEM_BP)
            item_tick.append(k)
            item_bytes.append(bp_bytes[r])
            item_ready.append(td[k])
    kind = np.array(item_kind, dtype=np.int64)
    tick = np.array(item_tick, dtype=np.int64)
    sizes = np.array([len(b) for b in item_bytes], dtype=np.int64)
    log.info("UART: %d items, %d bytes offered, baud %d, buffer %d B", len(kind), int(sizes.sum()), baud, buffer_bytes)
    sch = uart_schedule(np.array(item_ready), sizes, baud, buffer_bytes, resets=[e.start_s for e in resets])

    # --- on the wire: cut by resets, corrupted bytes (each copy of a frame independently) ---
    corrupt_rng = fault_rng(seed, "corrupt_byte")
    p_corrupt_dup = schedule.frame_rates.get("corrupt", 0.0)
    # one draw per non-cuff item, so that cuff readings do not move the draws of the frames
    not_cuff = (kind != _ITEM_CUFF) & (kind != _ITEM_BP)  # device-BP records: the same
    dup_corrupt_draw = np.zeros(len(kind), dtype=bool)
    dup_corrupt_draw[not_cuff] = fault_rng(seed, "corrupt_dup").random(int(not_cuff.sum())) < p_corrupt_dup
    chunks: list[bytes] = []
    chunk_times: list[float] = []
    item_corrupt = np.zeros(len(kind), dtype=bool)
    rate = baud / 10.0 if baud > 0 else np.inf
    for i in range(len(kind)):
        sent = int(sch.sent[i])
        if not sch.accepted[i] or sent == 0:
            continue
        data = item_bytes[i][:sent]
        k = int(tick[i])
        hit = corrupt_draw[k] if kind[i] == _ITEM_FRAME else (kind[i] == _ITEM_DUP and dup_corrupt_draw[i])
        if hit and sent == sizes[i] and not trunc[k]:
            buf = bytearray(data)
            pos = int(corrupt_rng.integers(0, len(buf)))
            buf[pos] = (buf[pos] + int(corrupt_rng.integers(1, 256))) % 256
            data = bytes(buf)
            item_corrupt[i] = True
        chunks.append(data)
        end = sch.start[i] + sent / rate if np.isfinite(rate) else sch.start[i]
        chunk_times.append(float(end))

    # --- per wire item, then per tick ---
    is_copy = (kind == _ITEM_FRAME) | (kind == _ITEM_DUP)
    partial = sch.accepted & (sch.sent > 0) & ((sch.sent < sizes) | trunc[tick]) & is_copy
    complete = sch.accepted & (sch.sent == sizes) & ~trunc[tick] & is_copy
    intact = complete & ~item_corrupt
    copies = np.zeros(n, dtype=np.int64)
    np.add.at(copies, tick[complete], 1)
    n_intact = np.zeros(n, dtype=np.int64)
    np.add.at(n_intact, tick[intact], 1)
    item_state = np.where(~sch.accepted, "overflow",
                          np.where(sch.sent == 0, "reset_lost",
                                   np.where(partial, "truncated",
                                            np.where(item_corrupt, "corrupted", "emitted")))).astype(object)
    status = np.full(n, "reboot", dtype=object)
    status[sampled] = "emitted"
    status[drop] = "dropped"
    is_frame = kind == _ITEM_FRAME
    status[tick[is_frame]] = item_state[is_frame]  # the first copy decides...
    status[n_intact > 0] = "emitted"  # ...unless another copy arrived intact
    corrupted = np.zeros(n, dtype=bool)
    corrupted[tick[item_corrupt]] = True

    bits = np.zeros(n, dtype=np.int64)
    for name, mask in (("drop", drop), ("corrupt", corrupted), ("truncate", trunc), ("dup", dup),
                       ("reboot", reboot), ("saturate", masks["saturate"]), ("leadoff", masks["leadoff"]),
                       ("motion", masks["motion"]), ("flat", masks["flat"]), ("source_gap", gap)):
        bits[mask] |= FAULT_BITS[name]

    truth = {
        "tick": np.arange(n, dtype=np.int64),
        "boot": boot,
        "seq": seq,
        "t_true_s": t_true,
        "abp_mmHg": abp,
    }
    for j, ch in enumerate(chans):
        truth[f"{ch.name}_code"] = codes[:, j]
    truth["fault_bits"] = bits
    uniq, inv = np.unique(bits, return_inverse=True)
    truth["faults"] = np.array([fault_names(int(u)) for u in uniq], dtype=object)[inv]
    truth["status"] = status
    truth["copies"] = copies

    hdr_items = kind == _ITEM_HEADER
    dup_items = kind == _ITEM_DUP
    count = {s: int(np.sum(status == s)) for s in ("emitted", "corrupted", "truncated", "dropped", "overflow",
                                                   "reset_lost", "reboot")}
    summary = {
        "source": record.record_id,
        "format": fmt,
        "seed": int(seed),
        "fs": cfg.fs,
        "channels": [c.name for c in chans],
        "start_s": float(start_s),
        "duration_s": float(duration),
        "clock_ppm": float(ppm),
        "baud": int(baud),
        "buffer_bytes": int(buffer_bytes),
        "ticks": int(n),
        "ticks_reboot": count["reboot"],
        "frames_generated": int(sampled.sum()),
        "frames_emitted": count["emitted"] + count["corrupted"],
        "frames_intact": count["emitted"],
        "frames_corrupted": count["corrupted"],
        "frames_dropped_fault": count["dropped"],
        "frames_dropped_overflow": count["overflow"],
        "frames_lost_reset": count["reset_lost"],
        "frames_truncated": count["truncated"],
        "frames_truncated_fault": int(np.sum((status == "truncated") & trunc)),
        "frames_truncated_reset": int(np.sum((status == "truncated") & ~trunc)),
        "frames_duplicated": int(np.sum(dup_items)),
        "duplicates_intact": int(np.sum(np.maximum(n_intact - 1, 0))),
        "copies_on_wire": int(np.sum(sch.accepted & (sch.sent > 0) & is_copy)),
        "copies_corrupted": int(np.sum(item_corrupt)),
        "copies_truncated": int(np.sum(partial)),
        "resets": len(resets),
        "headers_sent": int(np.sum(hdr_items & sch.accepted & (sch.sent == sizes))),
        "bytes_out": int(sum(len(c) for c in chunks)),
        "beats": int(len(beats["sbp_mmHg"])),
        "faults": spec.to_dict(),
        "fault_events": [{"name": e.name, "start_s": e.start_s, "duration_s": e.duration_s} for e in schedule.events],
        "device": cfg_clock.to_dict(),
    }
    if readings is not None:
        ci = cuff_item
        readings["status"] = np.where(~sch.accepted[ci], "overflow",
                                      np.where(sch.sent[ci] == 0, "reset_lost",
                                               np.where(sch.sent[ci] < sizes[ci], "truncated", "emitted"))
                                      ).astype(object)
        summary["cuff"] = {
            **cuff.to_dict(),
            "readings": int(len(ci)),
            "skipped": int(readings.pop("skipped")),
            **{f"readings_{st}": int(np.sum(readings["status"] == st))
               for st in ("emitted", "truncated", "overflow", "reset_lost")},
        }
    if dev_bp is not None:
        bi = bp_item
        st = np.where(~sch.accepted[bi], "overflow",
                      np.where(sch.sent[bi] == 0, "reset_lost",
                               np.where(sch.sent[bi] < sizes[bi], "truncated", "emitted"))).astype(object)
        dev_bp.records["status"] = st
        o = dev_bp.outputs
        o["status"] = st[o["record"]] if len(st) else np.zeros(0, dtype=object)
        summary["device_bp"] = {
            **dev_bp.host.to_dict(),
            "records": int(len(bi)), "values": int(len(o["k"])), "values_claimed": int(np.isfinite(o["abp_mmHg"]).sum()),
            **{f"records_{x}": int(np.sum(st == x)) for x in ("emitted", "truncated", "overflow", "reset_lost")},
            "values_emitted": int(np.sum(o["status"] == "emitted")),
            "bytes_offered": int(sum(len(b) for b in bp_bytes)),
        }
    wire = sum(len(f) for f in frames) + sum(len(b) for b in bp_bytes)
    summary["data_rate_bytes_per_s"] = float(wire / duration) if duration else 0.0
    if baud > 0 and summary["data_rate_bytes_per_s"] > baud / 10.0:
        log.warning("data rate %.0f B/s exceeds the UART's %.0f B/s at %d baud: frames will overflow",
                    summary["data_rate_bytes_per_s"], baud / 10.0, baud)
    log.info("done: %d generated, %d emitted, %d dropped, %d overflow, %d corrupted, %d truncated",
             summary["frames_generated"], summary["frames_emitted"], summary["frames_dropped_fault"],
             summary["frames_dropped_overflow"], summary["frames_corrupted"], summary["frames_truncated"])
    return SimResult(chunks, np.array(chunk_times, dtype=np.float64), truth, beats, summary, chans, header, fmt,
                     readings, None if dev_bp is None else dev_bp.outputs)


@dataclass
class SimSegment:
    """One segment of :func:`device_stream`: its wire chunks, their times (s since the stream
    began) and the segment's summary (:func:`device_simulate`'s)."""

    index: int
    chunks: list[bytes]
    chunk_times: np.ndarray
    summary: dict
    start_s: float  # stream time of the segment's first tick

    @property
    def stream(self) -> bytes:
        return b"".join(self.chunks)


def device_stream(record: Record, total_s: float, segment_s: float = 600.0, cfg: DeviceConfig | None = None,
                  faults: FaultSpec | str | None = None, fmt: str = "text", baud: int = 115200, buffer_bytes: int = 512,
                  seed: int = 0, cuff: CuffSpec | None = None):
    """A long device stream, generated segment by segment with bounded memory: a generator of
    :class:`SimSegment` (the whole record of a 24 h stream would need ~12 GB at once).

    The device runs on: one header at the start, sequence numbers continuing across segments,
    the clock error fixed for the whole stream (drawn once from ``seed`` unless given). Each
    segment of ``segment_s`` seconds is :func:`device_simulate` on ``record`` from a start point
    that moves through the source and wraps around it (a source shorter than the stream is
    replayed; the wrap is a step in the signal, as a sensor moved on the skin would give), with
    its own seed (``seed + index``) for noise and fault draws; faults with fixed times repeat in
    every segment, and so do cuff readings (``cuff``: times from each segment's start; a
    segment too short for one reading has none). Memory is that of one segment, whatever
    ``total_s``.

    Examples
    --------
    >>> import numpy as np
    >>> from edgebp.record import Channel, Record
    >>> fs = 250.0
    >>> t = np.arange(int(30 * fs)) / fs
    >>> rec = Record("toy", [Channel("ecg", np.sin(2 * np.pi * t), fs, "mV"),
    ...                      Channel("ppg", np.sin(2 * np.pi * t - 1), fs, "NU"),
    ...                      Channel("abp", 95 + 25 * np.sin(2 * np.pi * t - 1.2), fs, "mmHg")])
    >>> segs = list(device_stream(rec, total_s=50, segment_s=20, baud=0))
    >>> [round(s.summary["duration_s"]) for s in segs], segs[1].stream.count(b"#EDGEBP")
    ([20, 20, 10], 0)
    >>> int(segs[1].stream.splitlines()[0].split(b",")[0]), segs[0].summary["ticks"]
    (5000, 5000)
    """
    if total_s <= 0 or segment_s <= 0:
        raise ValueError(f"total_s and segment_s must be > 0 (got {total_s}, {segment_s})")
    cfg = cfg or DeviceConfig()
    cfg = dataclasses.replace(cfg, clock_ppm=clock_ppm_resolve(cfg, seed))
    used = [record.get(n) for n in ("abp", "ecg", "ppg") if record.has(n)]
    src_len = min((len(c.signal) - 1) / c.fs for c in used) if used else 0.0
    seg = min(float(segment_s), src_len - 1.0 / cfg.fs)
    if seg <= 0:
        raise ValueError(f"source {record.record_id!r} is too short for a stream")
    t, i, seq, src = 0.0, 0, 0, 0.0
    while t < total_s - 1e-9:
        span = min(seg, total_s - t)
        if src + span > src_len:
            src = 0.0
        c = cuff if cuff is not None and cuff.active and (cuff.every_s is None or cuff.every_s < span) else None
        res = device_simulate(record, cfg, faults, fmt, baud, buffer_bytes, minutes=span / 60.0, start_s=src, seed=seed + i,
                              cuff=c, seq_start=seq, send_header=(i == 0))
        s = res.summary
        # the numbering continues after the segment's last frame (frames after a reset restart at 0)
        sampled_last_boot = res.truth["seq"][res.truth["boot"] == res.truth["boot"].max()]
        sampled_last_boot = sampled_last_boot[sampled_last_boot >= 0]
        seq = (int(sampled_last_boot[-1]) + 1) % SEQ_MOD if len(sampled_last_boot) else 0
        yield SimSegment(i, res.chunks, res.chunk_times + t, s, t)
        dur = float(s["duration_s"])
        t += dur
        src += dur
        i += 1
        del res


def _cuff_plan(cuff: CuffSpec, beats: dict, td: np.ndarray, sampled: np.ndarray, start_s: float,
               seed: int) -> dict:
    """The cuff readings to send: times, values and the tick each one precedes.

    Readings without a valid beat in their window, after the last sampled tick (rebooting
    to the end) or outside what the protocol accepts (after noise) are skipped with a warning.
    """
    from edgebp.runtime.protocol import CUFF_RANGE_MMHG

    times = cuff_schedule(cuff.every_s, cuff.at_s, float(td[-1]))
    r = cuff_readings(beats, start_s + times, cuff.window_s, cuff.noise_sd, seed)
    idx = np.flatnonzero(sampled)
    pos = np.searchsorted(td[idx], times, side="left")
    lo, hi = CUFF_RANGE_MMHG
    keep = []
    for i, t in enumerate(times.tolist()):
        sbp, dbp = float(r["sbp"][i]), float(r["dbp"][i])
        if r["n_beats"][i] == 0:
            log.warning("cuff reading at %g s skipped: no valid beat in [%g, %g] s", t, t - cuff.window_s, t)
        elif pos[i] >= idx.size:
            log.warning("cuff reading at %g s skipped: the device takes no sample after it", t)
        elif not (lo <= sbp <= hi and lo <= dbp <= hi and dbp < sbp):
            log.warning("cuff reading at %g s skipped: %.1f/%.1f mmHg is not a valid reading (%g..%g mmHg, "
                        "DBP below SBP)", t, sbp, dbp, lo, hi)
        else:
            keep.append(i)
    keep = np.array(keep, dtype=np.int64)
    log.info("cuff: %d readings (%d skipped), window %g s", keep.size, times.size - keep.size, cuff.window_s)
    return {"time": r["time"][keep], "sbp": r["sbp"][keep], "dbp": r["dbp"][keep], "n_beats": r["n_beats"][keep],
            "tick": idx[pos[keep]], "skipped": int(times.size - keep.size)}


def sim_output_paths(truth: str | Path) -> tuple[Path, Path]:
    """Default beat-truth and summary paths beside a truth CSV: ``X_beats.csv``, ``X_summary.json``.

    Examples
    --------
    >>> [p.name for p in sim_output_paths("out/truth.csv")]
    ['truth_beats.csv', 'truth_summary.json']
    """
    p = Path(truth)
    stem = p.stem if p.suffix else p.name
    return p.with_name(f"{stem}_beats.csv"), p.with_name(f"{stem}_summary.json")


def sim_truth_write(res: "SimResult", truth: str | Path, beats: str | Path | None = None,
                    summary: str | Path | None = None) -> tuple[Path, Path, Path]:
    """Write a simulation's per-sample truth, beat truth and summary (beside ``truth`` unless
    given); returns the three paths. What ``edgebp sim --truth`` writes."""
    beats_path, summary_path = sim_output_paths(truth)
    beats_path = Path(beats) if beats else beats_path
    summary_path = Path(summary) if summary else summary_path
    truth_write(truth, res.truth)
    truth_write(beats_path, res.beats)
    summary_write(summary_path, res.summary)
    if res.device_bp is not None:
        truth_write(sim_device_bp_path(truth), res.device_bp)
    return Path(truth), beats_path, summary_path


def sim_device_bp_path(truth: str | Path) -> Path:
    """The device-BP truth beside a truth CSV (``edgebp sim --firmware``): ``X_device_bp.csv``.

    Examples
    --------
    >>> sim_device_bp_path("out/truth.csv").name
    'truth_device_bp.csv'
    """
    p = Path(truth)
    return p.with_name(f"{p.stem if p.suffix else p.name}_device_bp.csv")
