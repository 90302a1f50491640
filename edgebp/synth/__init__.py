"""The built-in synthetic cohort (not clinical evidence): coupled ECG, PPG and ABP."""

from edgebp.synth.cohort import GENERATOR_VERSION, synth_cohort_cached, synth_cohort_write, synth_record, synth_subject_params

__all__ = ["GENERATOR_VERSION", "synth_cohort_cached", "synth_cohort_write", "synth_record", "synth_subject_params"]
