"""The ``edgebp`` command line.

Sub-commands live beside the code they drive and are imported only when invoked, so that
``edgebp run`` (the streaming runtime) never imports torch. A command is listed only when its
module exists in this installation.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import logging
import sys

import click

# name -> "module:attribute". Keep this the only registry of commands.
COMMANDS: dict[str, str] = {
    "data": "edgebp.commands:data_group",
    "grade": "edgebp.metrics_cli:grade_command",
    "train": "edgebp.train.cli:train_command",
    "evaluate": "edgebp.train.evaluate_cli:evaluate_command",
    "export": "edgebp.export.cli:export_command",
    "run": "edgebp.runtime.cli:run_command",
    "serve": "edgebp.runtime.serve_cli:serve_command",
    "sim": "edgebp.firmware_sim.cli:sim_command",
    "score": "edgebp.firmware_sim.score_cli:score_command",
    "budget": "edgebp.firmware_sim.budget_cli:budget_command",
    "firmware": "edgebp.firmware_sim.cgen_cli:firmware_group",
    "bench": "edgebp.bench.cli:bench_command",
    "cache": "edgebp.cache_cli:cache_group",
}

# What the `train` extra installs: a command that needs one of these says so in one line.
TRAIN_EXTRA_MODULES = ("torch", "onnxscript", "torch_pruning")


def train_extra_missing(exc: BaseException) -> str | None:
    """The `train` extra's module that ``exc`` (a ModuleNotFoundError) failed to find, else None."""
    if not isinstance(exc, ModuleNotFoundError):
        return None
    top = (exc.name or "").split(".")[0]
    return top if top in TRAIN_EXTRA_MODULES else None


def train_extra_message(module: str, command: str | None = None) -> str:
    """The one line a command without its training dependencies prints."""
    what = f"`edgebp {command}`" if command else "this command"
    return f"{what} needs {module}, which is not installed: pip install 'edgebp[train]'"


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(n for n, target in self.lazy.items() if _module_exists(target.split(":")[0]))
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            if not _module_exists(module):
                return None
            try:
                return getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as exc:
                # a command module that imports torch at the top still lists in --help and,
                # when invoked, says what to install instead of a traceback
                missing = train_extra_missing(exc)
                if missing is None:
                    raise
                return _needs_train_extra(name, missing)
        return super().get_command(ctx, name)


def _needs_train_extra(name: str, module: str) -> click.Command:
    def fail(args: tuple) -> None:
        raise CliError(train_extra_message(module, name), exit_code=1)

    return click.Command(name, callback=fail, params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
                         short_help="(needs the train extra: pip install 'edgebp[train]')")


class CliError(click.ClickException):
    """A one-line error for the user; exit code 2 (bad input) unless given."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgebp")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """edgebp: cuffless, continuous blood pressure from PPG/ECG, from training to the wearable.

    \b
    Example:
        edgebp data synth --subjects 4 --minutes 2 --out cohort/
        edgebp data inspect cohort/
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point: known errors become one line and a non-zero exit, never a traceback.

    ``argv``: the arguments (default ``sys.argv[1:]``), so that tests drive this very path.
    """
    from edgebp.paths import numba_cache_configure

    numba_cache_configure()  # before any command imports a numba kernel
    try:
        rv = cli.main(args=argv, standalone_mode=False)
        # without standalone mode click returns a command's ctx.exit(N) / Exit(N) code instead
        # of exiting (edgebp run stopped by SIGTERM: 143)
        if isinstance(rv, int) and rv != 0:
            sys.exit(rv)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # one line, not click's usage block: a bad option is said where it is, with where help is
        ctx = exc.ctx
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        click.echo(f"Error: {exc.filename or ''}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        # ENOSPC, EROFS, EIO...: the errno's text and the file, one line (exit 1: not bad input)
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"Error: {where}{exc.strerror or exc}" + (f" [{errno.errorcode.get(exc.errno, exc.errno)}]" if exc.errno else ""), err=True)
        sys.exit(1)
    except (ValueError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        click.echo(f"Error: {msg}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        missing = train_extra_missing(exc)
        if missing is None:
            raise
        command = next((a for a in (sys.argv[1:] if argv is None else argv) if a in COMMANDS), None)
        click.echo(f"Error: {train_extra_message(missing, command)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        logging.getLogger("edgebp").debug("unexpected error", exc_info=True)
        first = (str(exc).strip().splitlines() or [""])[0]
        click.echo(f"Error: {type(exc).__name__}: {first} (unexpected; edgebp -vv shows the traceback)", err=True)
        sys.exit(1)
