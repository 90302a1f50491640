"""``edgebp data synth``."""

from __future__ import annotations

import click
import numpy as np

from edgebp.cli import CliError


@click.command(name="synth")
@click.option("--subjects", type=int, default=8, show_default=True, help="Number of subjects (records).")
@click.option("--minutes", type=float, default=3.0, show_default=True, help="Length of each record.")
@click.option("--seed", type=int, default=0, show_default=True, help="Cohort seed (subject k is the same for any cohort size).")
@click.option("--fs", type=float, default=250.0, show_default=True, help="Sampling rate of every channel (Hz).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Directory for the WFDB records.")
def synth_command(subjects, minutes, seed, fs, out_dir):
    """Write the built-in synthetic cohort as WFDB records (ECG II, PPG, ABP, RESP).

    Physiologically coupled: per-subject heart rate, BP, stiffness, pre-ejection period;
    pulse transit time shortens as BP rises; PPG shape follows BP and stiffness; BP moves
    with breathing, slow drifts and step changes; realistic noise and ADC quantisation.
    SYNTHETIC RESULTS ARE NOT CLINICAL EVIDENCE.

    \b
    Example:
        edgebp data synth --subjects 8 --minutes 3 --seed 0 --out cohort/
    """
    from edgebp.processing.beats import abp_beats
    from edgebp.synth import synth_cohort_write

    if subjects < 1:
        raise CliError(f"--subjects must be at least 1, got {subjects}")
    if not 0 < minutes <= 1440:
        raise CliError(f"--minutes must be within (0, 1440], got {minutes}")
    if not 50 <= fs <= 2000:
        raise CliError(f"--fs must be within 50..2000 Hz, got {fs}")

    def progress(k, n, rec):
        abp = rec.get("abp")
        b = abp_beats(abp.signal, abp.fs)
        v = np.asarray(b.valid, bool)
        hr = 60.0 / np.median(np.diff(np.asarray(b.t_sys)[v])) if v.sum() > 2 else float("nan")
        s, d = np.asarray(b.sbp)[v], np.asarray(b.dbp)[v]
        click.echo(f"[{k}/{n}] {rec.record_id}: HR {hr:.0f} bpm, SBP {s.mean():.0f} ({s.min():.0f}-{s.max():.0f}), "
                   f"DBP {d.mean():.0f} ({d.min():.0f}-{d.max():.0f}) mmHg")

    paths = synth_cohort_write(out_dir, subjects, minutes, seed=seed, fs=fs, progress=progress)
    click.echo(f"wrote {len(paths)} synthetic records to {out_dir} (synthetic: not clinical evidence)")
