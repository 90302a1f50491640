"""``edgebp firmware``: the wearable's firmware as C99 (see :mod:`edgebp.firmware_sim.cgen`)."""

from __future__ import annotations

import json
import logging

import click

from edgebp.cli import CliError

log = logging.getLogger(__name__)


@click.group("firmware", help="The wearable's firmware: C99 for a bundle's streaming int8 model and its preprocessor.")
def firmware_group() -> None:
    pass


@firmware_group.command(
    "generate",
    help="""Write C99 for BUNDLE (a bundle directory, or 'default') into --out DIR.

\b
The streaming int8 model with integer-only kernels (int8 weights, int32 accumulators,
fixed-point requantisation: CMSIS-NN's scheme), the streaming preprocessor in float32
(resampler, running normaliser; the biquad cascades in float-float, pairs of float32) and
the API edgebp_init/edgebp_push/edgebp_pop; static buffers only, every one sized here.
Also a test harness and a Makefile for the host build (make -C DIR). See docs/firmware.md.""",
)
@click.argument("bundle")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for the C files.")
@click.option("--device-fs", type=float, default=None,
              help="The device's sampling rate (Hz), which sizes the resampler; default: the bundle's model rate.")
@click.option("--out-cap", type=int, default=None, help="Outputs the API queues between pops; default: 4 model steps.")
@click.option("--json", "as_json", is_flag=True, help="Print the sizes as one JSON object.")
def generate_command(bundle: str, out_dir: str, device_fs: float | None, out_cap: int | None, as_json: bool) -> None:
    from edgebp.firmware_sim.cgen import UnsupportedModel, firmware_generate
    from edgebp.runtime.bundle import BundleError

    if device_fs is not None and not device_fs > 0:
        raise CliError(f"--device-fs {device_fs:g}: must be > 0")
    try:
        res = firmware_generate(bundle, out_dir, device_fs=device_fs, out_cap=out_cap)
    except (UnsupportedModel, BundleError) as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:  # a rate the resampler cannot take, from the preprocessing chain
        raise CliError(f"{bundle}: {exc}") from None
    s = res["sizes"]
    if as_json:
        click.echo(json.dumps({"out": out_dir, **res}))
        return
    click.echo(f"wrote {len(res['files'])} files to {out_dir}: {', '.join(res['files'])}")
    click.echo(f"model: {s['weights']} B weights and tables, {s['arena']} B arena, {s['state']} B state, "
               f"{s['macs_per_step']} MACs per step; output queue {s['out_cap']} values")
