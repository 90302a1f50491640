"""``edgebp sim``: a simulated wearable streaming ECG/PPG over a serial line, with the truth."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click
import numpy as np

from edgebp.cli import CliError
from edgebp.cli_types import Finite, deprecated_alias, int_range, non_negative, positive
from edgebp.firmware_sim.cuff import DEFAULT_WINDOW_S, CuffSpec, cuff_times_parse, cuff_write
from edgebp.firmware_sim.device import DeviceConfig
from edgebp.firmware_sim.faults import FAULT_NAMES, FRAME_FAULTS, faults_parse
from edgebp.firmware_sim.simulate import FORMATS, device_simulate, sim_device_bp_path, sim_source_load, sim_truth_write
from edgebp.firmware_sim.uart import PtyPort, paced_write, stream_write_file

log = logging.getLogger(__name__)

# event faults (reset, saturate, leadoff, motion, flat) per second, at most: one every 100 ms
# is already a continuous fault
MAX_EVENT_RATE = 10.0

HELP = f"""Simulate a wearable: ECG/PPG front-ends, ADCs, clock, firmware and UART, with faults.

\b
The device samples a source whose true ABP is known (synth:SUBJECT from the synthetic
cohort, or record:PATH, a WFDB record with ECG, PLETH and ABP), streams frames in the
edgebp text or binary encoding (or MAX3010x-style "red=..., ir=..." lines), and writes
beside the stream the truth: per sample the sequence number, true time and true ABP,
the faults and whether the frame reached the wire (--truth), per beat SBP/DBP/MAP
(X_beats.csv) and the simulator's own counts (X_summary.json). Frames go out at one
frame rate (--frame-rate); a slower PPG (--ppg-fs) is sample-and-held.

\b
--faults: comma-separated NAME=RATE[+D] (random) or NAME@T[+D] (at time T, lasting D).
  drop, corrupt, truncate, dup   RATE = probability per frame (0..1);
                                 @T hits the frame at T, @T+D every frame in [T, T+D)
  reset, saturate, leadoff,      RATE = events per second (Poisson); +D fixes the
  motion, flat                   duration, else a random one; @T needs +D except reset
                                 (reset's D = reboot time, default 0.5 s)
  Times: 500ms, 30s (default unit), 2min, 1h.
  Valid names: {", ".join(FAULT_NAMES)}.
  Example: drop=0.01,corrupt=1e-4,reset@120s,leadoff@30s+5s,flat@60s+3s,motion=0.02

\b
Cuff readings (text or binary format): --cuff-every S (one every S seconds, the first at
S) and/or --cuff-at T1,T2,... (seconds from the start). A reading at T is the mean SBP
and DBP of the valid truth beats in [T - --cuff-window, T] (an oscillometric cuff reports
about the average over its measurement), plus --cuff-noise SD mmHg; it goes into the
stream (#CUFF line or 'C' frame) just before the first sample at or after T.
--cuff-csv writes the readings as time,sbp,dbp (time on the truth file's axis).

\b
The UART sends 10 bits per byte (8N1) from a transmit buffer (--buffer); when the data
rate exceeds --baud / 10 bytes/s the buffer fills and whole frames are dropped (counted).
Output: a file (as fast as possible, or --realtime), stdout (--out -), or a
pseudo-terminal (--pty: prints "device: /dev/pts/N", waits for a reader, then streams in
real time). Same --seed, same output.

\b
Examples:
    edgebp sim --source synth:3 --minutes 2 --out serial.log --truth truth.csv
    edgebp sim --source record:data/challenge2015/a123l --format binary \\
        --faults drop=0.01,reset@120s --baud 115200 --out serial.bin --truth truth.csv
    edgebp sim --source synth:1 --pty --faults motion=0.02 --truth truth.csv
    edgebp sim --source synth:3 --out serial.log --truth truth.csv --cuff-every 60 --cuff-csv cuff.csv
    edgebp firmware generate default --out fw --device-fs 250
    edgebp sim --source synth:3 --minutes 1 --firmware fw --out serial.log --truth truth.csv
"""


@click.command("sim", help=HELP)
@click.option("--source", required=True, help="synth:SUBJECT or record:PATH (needs ABP, and ECG/PPG).")
@click.option("--minutes", type=positive(max=7 * 24 * 60), default=None, help="Length to simulate [default: 5 for synth, whole record].")
@click.option("--start", "start_s", type=non_negative(), default=0.0, show_default=True, help="Start on the source (s).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--faults", default="", help="Fault specification (see above).")
@click.option("--baud", type=int_range(0, 20_000_000), default=115200, show_default=True, help="UART rate, 8N1; 0 = unlimited (USB).")
@click.option("--buffer", "buffer_bytes", type=int_range(1, 1 << 30), default=512, show_default=True, help="UART transmit buffer (bytes).")
@click.option("--seed", type=int_range(0, 2**32 - 1), default=0, show_default=True, help="Seed of clock, noise and faults.")
@click.option("--source-seed", type=int_range(0, 2**32 - 1), default=0, show_default=True, help="Cohort seed of a synth source.")
@click.option("--source-fs", type=positive(max=100_000), default=None, help="Sampling rate of a record:FILE.csv source (Hz).")
@click.option("--frame-rate", "fs", type=positive(max=100_000), default=250.0, show_default=True, help="Frame rate (Hz): the device's sampling rate.")
@click.option("--channels", default="ecg,ppg", show_default=True, help="Channels sent (text/binary): ecg, ppg.")
@click.option("--ppg-fs", type=positive(max=100_000), default=None, help="PPG's own rate (divides --frame-rate; sample-and-hold).")
@click.option("--ecg-bits", type=int_range(8, 24), default=16, show_default=True, help="ECG ADC resolution (8-24).")
@click.option("--ecg-range-mv", type=positive(max=10_000), default=5.0, show_default=True, help="ECG input range +- mV.")
@click.option("--ppg-bits", type=int_range(8, 24), default=18, show_default=True, help="PPG ADC resolution (8-24).")
@click.option("--ppg-polarity", type=click.Choice(["pleth", "raw"]), default="pleth", show_default=True,
              help="raw = photodiode polarity (pulse inverted), as a MAX3010x reads.")
@click.option("--leadoff-mode", type=click.Choice(["rail", "flat"]), default="rail", show_default=True)
@click.option("--clock-ppm", type=Finite(min=-100_000, max=100_000), default=None, help="Clock frequency error [default: drawn by --seed in +-50].")
@click.option("--jitter-us", type=non_negative(max=1e6), default=20.0, show_default=True, help="Sample-clock jitter RMS (us).")
@click.option("--out", "out", default=None, help="Stream output file, or - for stdout (not with --pty).")
@click.option("--truth", required=True, type=click.Path(dir_okay=False), help="Per-sample truth CSV.")
@click.option("--truth-beats", type=click.Path(dir_okay=False), default=None, help="[default: TRUTH_beats.csv]")
@click.option("--summary", type=click.Path(dir_okay=False), default=None, help="[default: TRUTH_summary.json]")
@click.option("--realtime", is_flag=True, help="Pace the output at real time (always on with --pty).")
@click.option("--speed", type=positive(max=1e6), default=1.0, show_default=True, help="Real-time factor for paced output.")
@click.option("--pty", "use_pty", is_flag=True, help="Stream into a new pseudo-terminal.")
@click.option("--pty-wait", type=non_negative(max=86_400), default=60.0, show_default=True,
              help="Seconds to wait for a reader to open the pty (0 = do not wait).")
@click.option("--pty-linger", type=non_negative(max=86_400), default=2.0, show_default=True,
              help="Seconds to keep the pty open after the last byte unless the reader closes it first.")
@click.option("--cuff-every", "cuff_every", type=positive(), default=None, metavar="SECONDS",
              help="A cuff reading every SECONDS, the first at SECONDS.")
@click.option("--cuff-at", "cuff_at", default=None, metavar="T1,T2,...",
              help="Cuff readings at these times (s from the start; units ms, s, min, h allowed).")
@click.option("--cuff-window", type=positive(max=3600), default=DEFAULT_WINDOW_S, show_default=True, metavar="SECONDS",
              help="Cuff measurement window: a reading is the mean of the truth beats over it.")
@click.option("--cuff-noise", type=non_negative(max=100), default=0.0, show_default=True, metavar="SD",
              help="Gaussian noise SD added to cuff SBP and DBP (mmHg), seeded by --seed.")
@click.option("--cuff-csv", type=click.Path(dir_okay=False), default=None,
              help="Also write the cuff readings as CSV time,sbp,dbp.")
@click.option("--firmware", "firmware_dir", type=click.Path(), default=None, metavar="DIR",
              help="Generated firmware (edgebp firmware generate BUNDLE --out DIR --device-fs RATE): the device "
                   "computes its own BP with its host build (built with $CC/gcc if missing) and sends it in the "
                   "stream (#BP lines / 'P' frames); text or binary format.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@deprecated_alias("--fs", "--frame-rate", "fs", type=positive(max=100_000))
def sim_command(source, minutes, start_s, fmt, faults, baud, buffer_bytes, seed, source_seed, source_fs, fs, channels, ppg_fs,
                ecg_bits, ecg_range_mv, ppg_bits, ppg_polarity, leadoff_mode, clock_ppm, jitter_us, out, truth,
                truth_beats, summary, realtime, speed, use_pty, pty_wait, pty_linger, cuff_every, cuff_at, cuff_window,
                cuff_noise, cuff_csv, firmware_dir, quiet):
    """Simulate a wearable streaming over a serial line."""
    def say(msg: str) -> None:
        if not quiet:
            click.echo(f"sim: {msg}", err=True)

    if use_pty and out is not None:
        raise CliError("--out and --pty exclude each other: the stream goes to the pty")
    if not use_pty and out is None:
        raise CliError("give --out FILE (or - for stdout) or --pty")
    if speed <= 0:
        raise CliError(f"--speed must be positive, got {speed}")
    if minutes is not None and minutes <= 0:
        raise CliError(f"--minutes must be positive, got {minutes}")
    if baud < 0:
        raise CliError(f"--baud must be >= 0, got {baud}")
    if buffer_bytes <= 0:
        raise CliError(f"--buffer must be positive, got {buffer_bytes}")
    try:
        spec = faults_parse(faults)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for r in spec.rates:
        # an event rate is drawn as a Poisson process over the whole run: 1e9 events/s would
        # never finish drawing; more than MAX_EVENT_RATE is a continuous fault (use @T+D)
        if r.name not in FRAME_FAULTS and r.rate > MAX_EVENT_RATE:
            raise CliError(f"--faults item {r.name}={r.rate:g}: {r.name} is events per second, at most {MAX_EVENT_RATE:g} "
                           f"(for a fault that lasts, give {r.name}@T+D)")
    for e in spec.events:
        if not (np.isfinite(e.start_s) and (e.duration_s is None or np.isfinite(e.duration_s))):
            raise CliError(f"--faults item {e.name}@{e.start_s:g}: the time and duration must be finite")
    try:
        cuff = CuffSpec(every_s=cuff_every, at_s=cuff_times_parse(cuff_at) if cuff_at is not None else (),
                        window_s=cuff_window, noise_sd=cuff_noise)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not cuff.active:
        given = [name for name, v, d in (("--cuff-csv", cuff_csv, None), ("--cuff-window", cuff_window, DEFAULT_WINDOW_S),
                                         ("--cuff-noise", cuff_noise, 0.0)) if v != d]
        if given:
            raise CliError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --cuff-every or "
                           "--cuff-at (when the cuff measures)")
    if cuff.active and fmt == "max3010x":
        raise CliError("cuff readings (--cuff-every/--cuff-at) need --format text or binary: "
                       "MAX3010x lines have no place for them")
    try:
        cfg = DeviceConfig(
            fs=fs, channels=tuple(c for c in channels.split(",") if c.strip()), ppg_fs=ppg_fs,
            ecg_bits=ecg_bits, ecg_range_mv=ecg_range_mv, ppg_bits=ppg_bits, ppg_polarity=ppg_polarity,
            leadoff_mode=leadoff_mode, clock_ppm=clock_ppm, jitter_us=jitter_us,
        )
    except ValueError as exc:
        raise CliError(f"device option: {exc}") from None
    if firmware_dir is not None and fmt == "max3010x":
        raise CliError("--firmware needs --format text or binary: MAX3010x lines have no place for the device's BP")
    firmware = None
    if firmware_dir is not None:
        from edgebp.firmware_sim.device_bp import FirmwareError, firmware_host_open

        try:
            firmware = firmware_host_open(firmware_dir, cfg.fs, cfg.channels)
        except FirmwareError as exc:
            raise CliError(str(exc)) from None
        say(f"firmware: {'built' if firmware.built else 'using'} {firmware.exe}"
            + (f" ({firmware.compiler})" if firmware.built else ""))
    for p in (truth, truth_beats, summary, cuff_csv, None if out in (None, "-") else out):
        if p is not None and not Path(p).resolve().parent.is_dir():
            raise CliError(f"{p}: the directory does not exist")

    say(f"loading {source}")
    record = sim_source_load(source, minutes=minutes, source_seed=source_seed, source_fs=source_fs)
    t0 = time.monotonic()
    try:
        res = device_simulate(record, cfg, spec, fmt=fmt, baud=baud, buffer_bytes=buffer_bytes,
                              minutes=minutes if minutes is not None or not source.startswith("synth:") else 5.0,
                              start_s=start_s, seed=seed, cuff=cuff if cuff.active else None, firmware=firmware)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    s = res.summary
    say(f"simulated {s['duration_s']:.1f} s in {time.monotonic() - t0:.1f} s: {s['frames_generated']} frames, "
        f"{s['frames_emitted']} on the wire ({s['frames_corrupted']} corrupted), {s['frames_dropped_fault']} dropped, "
        f"{s['frames_dropped_overflow']} UART overflow, {s['frames_truncated']} truncated, "
        f"{s['frames_duplicated']} duplicated, {s['resets']} reset(s); {s['bytes_out']} bytes")

    _, beats_path, summary_path = sim_truth_write(res, truth, truth_beats, summary)
    say(f"truth: {truth}, {beats_path}, {summary_path}")
    if res.device_bp is not None:
        d = s["device_bp"]
        say(f"device BP: {d['values']} outputs ({d['values_claimed']} claimed) in {d['records']} records, "
            f"{d['records_emitted']} complete on the wire; truth in {sim_device_bp_path(truth)}")
    if res.cuff is not None:
        c = s["cuff"]
        say(f"cuff: {c['readings']} reading(s) ({c['readings_emitted']} complete on the wire, {c['skipped']} skipped)"
            + (f", written to {cuff_csv}" if cuff_csv else ""))
        if cuff_csv:
            cuff_write(cuff_csv, res.cuff)

    def progress(stream_s: float, nbytes: int) -> None:
        say(f"streamed {stream_s:.0f} s of {s['duration_s']:.0f} s ({nbytes} bytes)")

    if use_pty:
        port = PtyPort()
        try:
            click.echo(f"device: {port.path}")
            sys.stdout.flush()
            say(f"pseudo-terminal {port.path}")
            if pty_wait > 0:
                say(f"waiting up to {pty_wait:g} s for a reader to open {port.path}")
                if not port.wait_reader(pty_wait):
                    raise CliError(f"no reader opened {port.path} within {pty_wait:g} s (--pty-wait)", exit_code=1)
            n = paced_write(res.chunks, res.chunk_times, port.write, speed=speed, realtime=True,
                            stop=port.reader_gone, on_progress=progress)
            port.drain()
            say(f"wrote {n} bytes to {port.path}")
            if pty_linger > 0 and not port.linger(pty_linger):
                say(f"closing {port.path} after {pty_linger:g} s (--pty-linger)")
        finally:
            port.close()
        return
    try:
        if out == "-":
            n = stream_write_file(res.chunks, res.chunk_times, sys.stdout.buffer, realtime=realtime, speed=speed,
                                  on_progress=progress)
        else:
            with open(out, "wb") as fh:
                n = stream_write_file(res.chunks, res.chunk_times, fh, realtime=realtime, speed=speed,
                                      on_progress=progress)
    except BrokenPipeError:
        say("output closed by the reader")
        return
    except OSError as exc:  # ENOSPC, EIO: one line naming the output
        import errno

        code = f" [{errno.errorcode.get(exc.errno, exc.errno)}]" if exc.errno else ""
        raise CliError(f"{exc.filename or ('stdout' if out == '-' else out)}: {exc.strerror or exc}{code}", exit_code=1) from None
    say(f"wrote {n} bytes to {'stdout' if out == '-' else out}")
