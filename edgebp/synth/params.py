"""Per-subject physiological parameters of the synthetic cohort, drawn from population laws.

The population is built so that a model can learn something that transfers to unseen
subjects: pulse transit time follows one common law, ``PTT = PTT0 * exp(-gamma * (MAP -
MAP_REF))`` with ``PTT0`` set by arterial stiffness (Moens-Korteweg: PWV ~ sqrt(E), so
PTT0 ~ 1/sqrt(E)), and only modest per-subject variation in ``gamma``, body size and
pre-ejection period. Stiffness is correlated with baseline pressure (older, hypertensive
arteries are stiffer), as in real cohorts.

Synthetic data are not clinical evidence.

Examples
--------
>>> import numpy as np
>>> from edgebp.synth.params import subject_params_draw
>>> p = subject_params_draw(np.random.default_rng(0))
>>> 95 <= p.sbp0 <= 175 and 55 <= p.dbp0 <= 100 and 50 <= p.pep0_ms <= 110
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Population-common constants of the transit-time law (one law for everyone).
MAP_REF = 95.0          # mmHg at which PTT equals PTT0
PTT_REF_FINGER_S = 0.210  # finger PTT of an average-stiffness subject at MAP_REF
GAMMA_POP = 0.0095      # 1/mmHg: PTT shortens ~2 ms per mmHg around 210 ms
RADIAL_FRACTION = 0.55  # radial (ABP catheter) transit as a fraction of the finger transit


@dataclass(frozen=True)
class SubjectParams:
    """Everything that makes one synthetic subject different from another.

    Times are in seconds unless the name says ``_ms``; pressures in mmHg; rates in Hz or bpm.
    """

    hr0: float             # resting heart rate, bpm
    hr_bp_coupling: float  # bpm per mmHg of SBP change (steps and drift)
    rr_jitter: float       # beat-to-beat RR jitter, fraction of RR
    rsa_bpm: float         # respiratory sinus arrhythmia amplitude, bpm
    mayer_bpm: float       # 0.1 Hz Mayer-wave heart-rate amplitude, bpm
    sbp0: float            # baseline systolic, mmHg
    dbp0: float            # baseline diastolic, mmHg
    dbp_follow: float      # fraction of an SBP step that DBP follows
    resp_hz: float         # breathing rate, Hz
    resp_bp_mmhg: float    # respiratory SBP swing amplitude, mmHg
    mayer_bp_mmhg: float   # 0.1 Hz Mayer-wave SBP amplitude, mmHg
    drift_mmhg: float      # SD of the slow SBP drift, mmHg
    step_rate_per_min: float  # expected BP step changes per minute
    stiffness: float       # relative arterial stiffness E/E_ref (1 = population average)
    body: float            # arterial path length relative to average
    gamma: float           # 1/mmHg, PTT sensitivity to MAP
    ptt0_ms: float         # finger PTT at MAP_REF, ms (from stiffness and body size)
    pep0_ms: float         # pre-ejection period at rest, ms
    ppg_amp: float         # PPG pulse amplitude, NU (perfusion)
    ppg_rise_s: float      # PPG foot-to-peak time at rest, s
    ppg_reflect0: float    # PPG reflected-wave amplitude for average stiffness and BP
    ecg_r_mv: float        # R-wave amplitude, mV
    ecg_t_rel: float       # T-wave amplitude relative to R
    ecg_p_rel: float       # P-wave amplitude relative to R
    ecg_noise_mv: float    # ECG white-noise SD, mV
    ppg_noise_rel: float   # PPG white-noise SD relative to the pulse amplitude
    powerline_hz: float    # 50 or 60 Hz mains
    powerline_mv: float    # mains pick-up amplitude on the ECG, mV
    motion_rate_per_min: float  # expected motion-artefact bursts per minute

    def to_dict(self) -> dict:
        """Plain floats rounded for JSON (cohort.json)."""
        return {k: round(float(v), 6) for k, v in asdict(self).items()}


def subject_params_draw(rng: np.random.Generator) -> SubjectParams:
    """Draw one subject's parameters from the population distributions.

    Parameters
    ----------
    rng : numpy.random.Generator
        The subject's own generator (the caller seeds it from (seed, subject)).

    Returns
    -------
    SubjectParams
        Baseline SBP 95-175 and DBP 55-100 mmHg with a spread that includes hypertensive
        and hypotensive subjects; PEP 50-110 ms; stiffness log-normal, correlated with SBP.

    Examples
    --------
    >>> import numpy as np
    >>> a = subject_params_draw(np.random.default_rng(1))
    >>> b = subject_params_draw(np.random.default_rng(1))
    >>> a == b
    True
    """
    # Order of draws is part of the generator version: change it and bump GENERATOR_VERSION.
    z_bp = rng.standard_normal()
    sbp0 = float(np.clip(132.0 + 21.0 * z_bp, 95.0, 175.0))
    dbp0 = float(np.clip(78.0 + 0.45 * (sbp0 - 132.0) + 7.0 * rng.standard_normal(), 55.0, 100.0))
    # Keep a physiological pulse pressure (25..85 mmHg) without leaving the DBP range.
    dbp0 = float(np.clip(dbp0, max(55.0, sbp0 - 85.0), min(100.0, sbp0 - 25.0)))

    z_stiff = 0.6 * (sbp0 - 132.0) / 21.0 + 0.8 * rng.standard_normal()
    stiffness = float(np.exp(0.22 * z_stiff))
    body = float(np.clip(1.0 + 0.035 * rng.standard_normal(), 0.9, 1.1))
    ptt0_ms = 1000.0 * PTT_REF_FINGER_S * body / np.sqrt(stiffness)
    gamma = float(GAMMA_POP * np.clip(1.0 + 0.08 * rng.standard_normal(), 0.8, 1.2))
    pep0_ms = float(np.clip(80.0 + 11.0 * rng.standard_normal(), 50.0, 110.0))

    hr0 = float(np.clip(74.0 + 11.0 * rng.standard_normal(), 50.0, 110.0))
    return SubjectParams(
        hr0=hr0,
        hr_bp_coupling=float(rng.uniform(0.1, 0.45)),
        rr_jitter=float(rng.uniform(0.005, 0.02)),
        rsa_bpm=float(rng.uniform(0.8, 4.0)),
        mayer_bpm=float(rng.uniform(0.5, 2.0)),
        sbp0=sbp0,
        dbp0=dbp0,
        # Stiff arteries widen the pulse pressure when pressure rises: DBP follows less.
        dbp_follow=float(np.clip(0.65 - 0.15 * (stiffness - 1.0) + 0.05 * rng.standard_normal(), 0.4, 0.8)),
        resp_hz=float(rng.uniform(0.15, 0.35)),
        resp_bp_mmhg=float(rng.uniform(1.5, 5.0)),
        mayer_bp_mmhg=float(rng.uniform(1.0, 3.0)),
        drift_mmhg=float(rng.uniform(2.0, 6.0)),
        step_rate_per_min=float(rng.uniform(0.6, 1.2)),
        stiffness=stiffness,
        body=body,
        gamma=gamma,
        ptt0_ms=float(ptt0_ms),
        pep0_ms=pep0_ms,
        ppg_amp=float(np.exp(0.3 * rng.standard_normal())),
        ppg_rise_s=float(rng.uniform(0.12, 0.17)),
        ppg_reflect0=float(rng.uniform(0.45, 0.65)),
        ecg_r_mv=float(rng.uniform(0.7, 1.8)),
        ecg_t_rel=float(rng.uniform(0.15, 0.4)),
        ecg_p_rel=float(rng.uniform(0.08, 0.18)),
        ecg_noise_mv=float(rng.uniform(0.005, 0.025)),
        ppg_noise_rel=float(rng.uniform(0.005, 0.02)),
        powerline_hz=float(rng.choice([50.0, 60.0])),
        powerline_mv=float(rng.uniform(0.005, 0.05)),
        motion_rate_per_min=float(rng.uniform(0.5, 1.5)),
    )
