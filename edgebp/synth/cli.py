"""``edgebp data synth``: write the built-in synthetic cohort (not clinical evidence)."""

from __future__ import annotations

from pathlib import Path

import click

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
    Beside the records: RECORDS, cohort.json (parameters, true summaries, generator
    version) and truth/<record>.csv (per-beat true SBP/DBP, PEP, PTT).

    SYNTHETIC RESULTS ARE NOT CLINICAL EVIDENCE.

    \b
    Example:
        edgebp data synth --subjects 8 --minutes 3 --seed 0 --out cohort/
    """
    from edgebp.synth import synth_cohort_write

    if subjects < 1:
        raise CliError(f"--subjects must be at least 1, got {subjects}")
    if not 0 < minutes <= 1440:
        raise CliError(f"--minutes must be within (0, 1440], got {minutes}")
    if not 50 <= fs <= 2000:
        raise CliError(f"--fs must be within 50..2000 Hz, got {fs}")
    if seed < 0:
        raise CliError(f"--seed must be >= 0, got {seed}")
    out = Path(out_dir)
    if (out / "cohort.json").exists():
        click.echo(f"replacing the synthetic cohort in {out}", err=True)

    def progress(k, n, subj):
        # True values from the generator, not a detector's estimate.
        s = subj.summary()
        click.echo(f"[{k}/{n}] {subj.record.record_id}: HR {s['hr_mean']:.0f} bpm, "
                   f"SBP {s['sbp_mean']:.0f} ({s['sbp_min']:.0f}-{s['sbp_max']:.0f}), "
                   f"DBP {s['dbp_mean']:.0f} ({s['dbp_min']:.0f}-{s['dbp_max']:.0f}) mmHg (true)")

    paths = synth_cohort_write(out, subjects, minutes, seed=seed, fs=fs, progress=progress)
    click.echo(f"wrote {len(paths)} synthetic records to {out} (synthetic: not clinical evidence)")
