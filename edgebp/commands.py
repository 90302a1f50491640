"""``edgebp data``: the data sub-commands (synthesise a cohort, inspect records)."""

from __future__ import annotations

import click

from edgebp.cli import LazyGroup

DATA_COMMANDS = {
    "synth": "edgebp.synth.cli:synth_command",
    "inspect": "edgebp.inspect:inspect_command",
}


@click.group(name="data", cls=LazyGroup, lazy=DATA_COMMANDS)
def data_group() -> None:
    """Make and look at data: the synthetic cohort, and what is usable in real records.

    \b
    Example:
        edgebp data synth --subjects 8 --minutes 3 --seed 0 --out cohort/
        edgebp data inspect ../shared/data/challenge2015
    """
