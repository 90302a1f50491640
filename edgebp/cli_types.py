"""Click parameter types that refuse what click's own ranges let through (NaN, inf).

``click.FloatRange(min=0)`` accepts ``nan`` (every comparison with NaN is false) and ``inf``;
an option read by a loop (``--idle-timeout nan``, a fault rate of ``1e9``) then hangs or
silently misbehaves. These types check every option up front, before any work starts, and
fail with click's one-line "Invalid value for '--x': ..." message.

Examples
--------
>>> import click
>>> from click.testing import CliRunner
>>> @click.command()
... @click.option("--t", type=Finite(min=0, min_open=True))
... def c(t):
...     click.echo(t)
>>> CliRunner().invoke(c, ["--t", "nan"]).output
"Error: Invalid value for '--t': nan is not a finite number.\\n"
>>> CliRunner().invoke(c, ["--t", "0"]).output.splitlines()[-1]
"Error: Invalid value for '--t': 0 is not > 0."
>>> CliRunner().invoke(c, ["--t", "2.5"]).output
'2.5\\n'
"""

from __future__ import annotations

import math

import click


class OneLineBadParameter(click.BadParameter):
    """A bad option value shown as one line, ``Error: Invalid value for '--x': ...``, without
    click's usage block before it: as every other edgebp error is printed."""

    def show(self, file=None) -> None:
        click.ClickException.show(self, file)


class _OneLine:
    def fail(self, message: str, param=None, ctx=None):
        raise OneLineBadParameter(message, ctx=ctx, param=param)


class Finite(_OneLine, click.ParamType):
    """A finite float, optionally within ``[min, max]`` (open ends with ``min_open`` / ``max_open``)."""

    name = "number"

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False, max_open: bool = False):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def _range(self) -> str:
        lo = None if self.min is None else f"{'>' if self.min_open else '>='} {self.min:g}"
        hi = None if self.max is None else f"{'<' if self.max_open else '<='} {self.max:g}"
        if lo and hi:
            return f"within {'(' if self.min_open else '['}{self.min:g}, {self.max:g}{')' if self.max_open else ']'}"
        return lo or hi or "finite"

    def convert(self, value, param, ctx):
        if isinstance(value, float) and math.isfinite(value) and self._ok(value):
            return value
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number.", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value} is not a finite number.", param, ctx)
        if not self._ok(v):
            self.fail(f"{value} is not {self._range()}.", param, ctx)
        return v

    def _ok(self, v: float) -> bool:
        if self.min is not None and (v <= self.min if self.min_open else v < self.min):
            return False
        if self.max is not None and (v >= self.max if self.max_open else v > self.max):
            return False
        return True

    def __repr__(self) -> str:
        return f"Finite({self._range()})"


def positive(max: float | None = None) -> Finite:
    """A finite float > 0 (and <= ``max``)."""
    return Finite(min=0.0, min_open=True, max=max)


def non_negative(max: float | None = None) -> Finite:
    """A finite float >= 0 (and <= ``max``)."""
    return Finite(min=0.0, max=max)


class IntRange(_OneLine, click.IntRange):
    """click's IntRange with a one-line error."""


def int_range(min: int | None = None, max: int | None = None) -> click.IntRange:
    """An integer within ``[min, max]``, never clamped (out of range is an error).

    Examples
    --------
    >>> from click.testing import CliRunner
    >>> @click.command()
    ... @click.option("--n", type=int_range(1, 8))
    ... def c(n):
    ...     click.echo(n)
    >>> CliRunner().invoke(c, ["--n", "0"]).output
    "Error: Invalid value for '--n': 0 is not in the range 1<=x<=8.\\n"
    """
    return IntRange(min=min, max=max, clamp=False)


def deprecated_alias(old: str, new: str, dest: str, **option_kwargs):
    """A hidden option ``old`` kept for scripts written before ``new`` replaced it.

    Apply it directly above the command function (below every ``@click.option``): it adds the
    hidden option and, when it is given, prints ``OLD is deprecated; use NEW`` on standard error
    and passes its value on as ``dest`` (the parameter of ``new``), so both spellings behave
    identically. Giving both is an error. ``option_kwargs`` (``type``, ``multiple``...) should
    match ``new``'s so the old spelling is checked the same way.

    Examples
    --------
    >>> from click.testing import CliRunner
    >>> @click.command()
    ... @click.option("--summary", default=None)
    ... @deprecated_alias("--summary-json", "--summary", "summary")
    ... def c(summary):
    ...     click.echo(summary)
    >>> r = CliRunner().invoke(c, ["--summary-json", "s.json"])
    >>> r.stdout, r.stderr
    ('s.json\\n', '--summary-json is deprecated; use --summary\\n')
    """
    import functools

    key = "_deprecated_" + old.lstrip("-").replace("-", "_")

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            value = kwargs.pop(key, None)
            if value is not None and value != ():
                ctx = click.get_current_context()
                if ctx.get_parameter_source(dest) == click.core.ParameterSource.COMMANDLINE:
                    raise OneLineBadParameter(f"the same option as {new} (its deprecated spelling): give {new} only", ctx=ctx, param_hint=f"'{old}'")
                click.echo(f"{old} is deprecated; use {new}", err=True)
                kwargs[dest] = value
            return fn(*args, **kwargs)

        return click.option(old, key, hidden=True, default=None, **option_kwargs)(wrapper)

    return decorate
