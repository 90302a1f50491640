"""``edgebp budget``: does a model fit a microcontroller (flash, RAM, compute)?"""

from __future__ import annotations

import json
import logging

import click

from edgebp.cli import CliError
from edgebp.firmware_sim.budget import budget_format, bundle_resolve_loaded, mcu_check, model_load, onnx_budget
from edgebp.firmware_sim.mcu_profiles import MCU_PROFILES, mcu_profiles_select
from edgebp.cli_types import deprecated_alias
from edgebp.variants import BUDGET_VARIANTS, VariantChoice, bundle_file_key

log = logging.getLogger(__name__)


def _shape_parse(text: str) -> tuple[str, list[int]]:
    name, sep, dims = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, [int(d) for d in dims.lower().split("x")]
    except ValueError:
        raise CliError(f"--input-shape {text!r}: expected NAME=DxDxD, e.g. x=1x2x500") from None


@click.command(
    "budget",
    help=f"""Check a model against microcontroller budgets: flash, RAM and compute.

\b
MODEL is an .onnx file (fp32 or int8, QDQ or QOperator) or an export bundle directory
(manifest.json names the models, the sampling rate, hop and streaming state inputs; the
streaming int8 model is checked first, see --variant). A bundle is opened as edgebp run
opens it (schema, paths, sizes, sha256, every model parsed) and refused with one line
when it does not load; a plain .onnx file must be a regular file holding a valid model.
Reports weight bytes (flash), peak activation bytes over the execution order and
persistent state bytes (RAM), MACs per inference and per second (inferences/s = fs/hop),
and per MCU the duty cycle = cycles/s / clock, with PASS/FAIL per resource. The model
may use 50 % of RAM, 50 % of flash and 50 % of the CPU (see docs/firmware-sim.md).

\b
MCU profiles: {", ".join(MCU_PROFILES)} (or 'all', or a comma-separated list).

\b
Examples:
    edgebp budget model_int8.onnx --model-fs 125 --hop 125 --window 625 --mcu all
    edgebp budget bundle/ --mcu nrf52832 --json
""",
)
@click.argument("model", metavar="BUNDLE|MODEL.onnx")
@click.option("--mcu", default="all", show_default=True, help="MCU profile name(s), comma-separated, or 'all'.")
@click.option("--model-fs", "fs", type=float, default=None, help="Sampling rate of the model input (Hz); overrides the bundle's.")
@click.option("--hop", type=int, default=None, help="Samples between inferences; overrides the bundle's.")
@click.option("--window", type=int, default=None,
              help="Length substituted for symbolic time dimensions (samples); batch is always 1.")
@click.option("--state-input", "state_inputs", multiple=True,
              help="Name of an input carrying streaming state (repeatable; default: inputs named state*).")
@click.option("--input-shape", "input_shapes", multiple=True, help="Explicit input shape NAME=DxDxD (repeatable).")
@click.option("--variant", type=VariantChoice(BUDGET_VARIANTS, extra=("auto",)), default="auto", show_default=True,
              help="Which model of a bundle (auto: streaming int8 first).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--firmware", "firmware_dir", type=click.Path(file_okay=False), default=None,
              help="A directory from `edgebp firmware generate`: build it for the Cortex-M4F and show the measured "
                   ".text/.data/.bss and peak stack beside the estimates (needs arm-none-eabi-gcc).")
@deprecated_alias("--fs", "--model-fs", "fs", type=float)
def budget_command(model, mcu, fs, hop, window, state_inputs, input_shapes, variant, as_json, firmware_dir=None):
    """Check a bundle (or an ONNX model) against microcontroller budgets.

    Weight memory (flash), peak activation memory over the execution order, streaming state,
    and MACs per second of signal at the bundle's rate and hop, against profiles of real
    microcontrollers (stated int8 MAC-per-cycle assumptions): duty cycle and pass/fail per
    resource. BUNDLE may be "default", the bundle shipped with edgebp.

    \b
    Example:
        edgebp budget default --mcu nrf52832
        edgebp budget model.onnx --model-fs 125 --hop 25 --mcu all --json
    """
    from pathlib import Path

    from edgebp.cli import CliError

    from edgebp.runtime.bundle import BundleError

    if model == "default":
        from edgebp.paths import ASSETS

        model = str(ASSETS / "default_bundle")
    if not Path(model).exists():
        raise CliError(f"{model}: no such bundle directory or ONNX file")
    profiles = mcu_profiles_select(mcu)
    # a bundle goes through bundle_load, as for edgebp run (schema, paths, sizes, hashes,
    # every model parsed); a plain .onnx file through the same regular-file and ONNX checks
    try:
        onnx_path, meta, bundle = bundle_resolve_loaded(model, variant if variant == "auto" else bundle_file_key(variant))
        if bundle is None:
            model_load(onnx_path)
    except BundleError as exc:
        raise CliError(str(exc)) from None
    if meta:
        log.info("bundle %s: model %s (%s), fs %s, hop %s", model, onnx_path.name, meta.get("variant"),
                 meta.get("fs"), meta.get("hop"))
    fs = fs if fs is not None else meta.get("fs")
    hop = hop if hop is not None else meta.get("hop")
    window = window if window is not None else meta.get("window", hop)
    states = list(state_inputs) or meta.get("state_inputs") or None
    shapes = dict(_shape_parse(s) for s in input_shapes) or None
    if fs is not None and fs <= 0:
        raise CliError(f"--model-fs must be positive, got {fs}")
    if hop is not None and hop <= 0:
        raise CliError(f"--hop must be positive, got {hop}")
    budget = onnx_budget(onnx_path, fs=fs, hop=hop, window=window, state_inputs=states, input_shapes=shapes)
    checks = [mcu_check(budget, p) for p in profiles]
    est = None
    if bundle is not None and bundle.has("estimator"):
        from edgebp.firmware_sim.budget import estimator_budget

        # parsed and checked by bundle_load already
        est = estimator_budget(bundle.estimator(), float(fs or 125.0))
    measured = None
    if firmware_dir is not None:
        from edgebp.firmware_sim.cgen import firmware_measure

        try:
            measured = firmware_measure(firmware_dir)
        except (RuntimeError, FileNotFoundError) as exc:
            raise CliError(f"--firmware {firmware_dir}: {exc}") from None
    if as_json:
        out = {"budget": budget.to_dict(), "checks": [c.to_dict() for c in checks],
               "profiles": {p.name: p.to_dict() for p in profiles}, "estimator": est}
        if measured is not None:
            out["firmware_measured"] = measured
            if measured.get("instructions"):
                ins = measured["instructions"]
                measured["duty"] = {p.name: {"clock_hz": p.clock_hz, "duty": ins["instructions_per_s"] * ins["cpi_assumed"] / p.clock_hz,
                                             "duty_range": [ins["instructions_per_s"] * c / p.clock_hz for c in ins["cpi_range"]]}
                                    for p in profiles}
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(budget_format(budget, checks))
        if est is not None:
            click.echo(f"calibrated estimator ({est['method']}, {len(est['features'])} beat features, float32): flash {est['flash_bytes']} B, "
                       f"RAM {est['ram_bytes']} B ({est['ram_state_bytes']} state, {est['ram_window_bytes']} calibration-window beats, "
                       f"{est['ram_beat_ppg_bytes']} one beat's PPG), at most {est['ops_per_s_max']:,.0f} operations/s (220 bpm); "
                       "(not in the table above)")
        if measured is not None:
            m = measured
            click.echo(f"measured, Cortex-M4F build of {firmware_dir} ({m['build']}): flash {m['flash_bytes']} B "
                       f"(.text {m['text']} + .data {m['data']}) against the estimated weights {budget.weight_bytes} B; "
                       f"RAM {m['ram_bytes']} B against the estimated {budget.ram_bytes} B (.data {m['data']} + .bss {m['bss']} "
                       f"+ peak stack {m['stack_peak_bytes']} via {' > '.join(m['stack_chain'])}"
                       + (f"; library calls not counted: {', '.join(m['stack_not_counted'])}" if m["stack_not_counted"] else "") + ")")
            ins = m.get("instructions")
            if ins:
                duty = ", ".join(f"{p.name} {p.clock_hz / 1e6:g} MHz {100 * ins['instructions_per_s'] * ins['cpi_assumed'] / p.clock_hz:.1f}%"
                                 for p in profiles)
                click.echo(f"measured, QEMU instruction count: {ins['instructions_per_s'] / 1e6:.2f} M instructions per second of "
                           f"signal in edgebp_push; duty at {ins['cpi_assumed']:g} cycles per instruction (assumed; "
                           f"{ins['cpi_range'][0]:g}-{ins['cpi_range'][1]:g} the range): {duty}")
