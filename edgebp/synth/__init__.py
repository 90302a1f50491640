"""The built-in synthetic cohort: coupled ECG, PPG and ABP with known ground truth.

Synthetic results are not clinical evidence: the generator encodes assumed physiology (a
transit-time law, a pulse-shape model), so a model that does well here has learned those
assumptions. Use it to exercise the pipeline and compare methods; only real recordings say
anything about blood pressure.

Examples
--------
>>> from edgebp.synth import synth_subject
>>> s = synth_subject(0, minutes=0.5)
>>> s.record.names, s.summary()["sbp_mean"] > 80
(['ecg', 'ppg', 'abp', 'resp'], True)
"""

from edgebp.synth.cohort import (
    GENERATOR_VERSION,
    SynthSubject,
    synth_cohort_cached,
    synth_cohort_write,
    synth_record,
    synth_subject,
    synth_subject_params,
)

__all__ = [
    "GENERATOR_VERSION",
    "SynthSubject",
    "synth_cohort_cached",
    "synth_cohort_write",
    "synth_record",
    "synth_subject",
    "synth_subject_params",
]
