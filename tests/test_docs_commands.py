"""Every ``edgebp ...`` command shown in README.md, docs/*.md, scripts/demo.sh and the commands'
own --help examples parses against
the real command line: a renamed, removed or never-existing option (``--in``) fails here.

Each command is resolved to its sub-command and parsed with click's ``make_context`` (nothing
runs, so this is fast); file names in the examples are placeholders, so an option's
"does not exist" check is not held against them. A deprecated spelling (a hidden alias) in
the docs fails too: the docs show the current vocabulary.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from edgebp.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEMO = ROOT / "scripts" / "demo.sh"

_FENCE = re.compile(r"^\s*(```|~~~)")
_OPERATORS = {"|", "||", "&&", ";", "&", "(", ")"}
_REDIRECT = re.compile(r"^\d*[<>]+&?\d*$")


def _joined(numbered) -> list[tuple[int, str]]:
    """(line number, logical line) from (line number, line) pairs, continuation lines (a
    trailing backslash) joined onto the line that starts them."""
    out, buf, start = [], "", 0
    for k, line in numbered:
        if not buf:
            start = k
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((start, buf + line))
        buf = ""
    return out


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, logical line) of the fenced and the indented (4-space) code blocks,
    continuation lines joined."""
    def lines():
        fenced, block, blank, cont = False, False, True, False
        for k, line in enumerate(text.splitlines(), start=1):
            if _FENCE.match(line):
                fenced = not fenced
                continue
            if not fenced and not cont:
                if not line.strip():
                    blank = True
                    continue
                # an indented code block starts after a blank line (else the indent continues a list item)
                block = line.startswith(("    ", "\t")) and (blank or block)
                blank = False
                if not block:
                    continue
            cont = line.rstrip().endswith("\\")
            yield k, line

    return _joined(lines())


def _script_lines(text: str) -> list[tuple[int, str]]:
    """(line number, logical line) of a shell script, continuation lines joined."""
    return _joined(enumerate(text.splitlines(), start=1))


def _commands(line: str, script: bool) -> list[list[str]]:
    """The edgebp invocations on one shell line, as argument lists (after ``edgebp``)."""
    text = line.strip()
    if text.startswith("$ "):
        text = text[2:]
    if not text or text.startswith("#"):
        return []
    lex = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        tokens = list(lex)
    except ValueError:  # prose in a code block (an unmatched quote): not a command
        return []
    cmds, cur = [], []
    for t in tokens + [";"]:
        if t in _OPERATORS:
            cmds.append(cur)
            cur = []
        else:
            cur.append(t)
    names = ("$EDGEBP",) if script else ("edgebp", ".venv/bin/edgebp")
    out = []
    for c in cmds:
        while c and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", c[0]):  # VAR=value before the command
            c = c[1:]
        if c[:3] == ["python", "-m", "edgebp"] or c[:3] == [".venv/bin/python", "-m", "edgebp"]:
            c = ["edgebp"] + c[3:]
        if not c or c[0] not in names:
            continue
        args, skip = [], False
        for t in c[1:]:
            if skip:
                skip = False
            elif _REDIRECT.match(t):
                skip = True  # the redirect's file
            else:
                args.append(t)
        out.append(args)
    return out


_INLINE = re.compile(r"`((?:python -m )?edgebp [^`]+)`")
_SYNOPSIS = re.compile(r"\[|\.\.\.|\bA\|B\b|<[A-Za-z_]+>")


def _all_commands() -> list[tuple[str, click.Command]]:
    """Every sub-command (groups' too), for the examples in their own --help."""
    ctx = click.Context(cli, info_name="edgebp")
    out, todo = [], [(n, cli.get_command(ctx, n)) for n in cli.list_commands(ctx)]
    while todo:
        name, cmd = todo.pop(0)
        out.append((name, cmd))
        if isinstance(cmd, click.Group):
            todo += [(f"{name} {n}", cmd.get_command(ctx, n)) for n in cmd.list_commands(ctx)]
    return out


def _examples() -> list:
    """Full parses: the command lines of code blocks and the demo. Option-name checks: synopsis
    lines (``[--mcu NAME|all]``) and commands quoted inline in the prose (often fragments,
    ``edgebp evaluate``'s report, that would not parse as a whole)."""
    cases = []
    for path in DOCS:
        text = path.read_text()
        for k, line in _code_lines(text):
            if _SYNOPSIS.search(line) and re.search(r"\bedgebp\s", line):
                cases.append(pytest.param(("names", line), id=f"{path.name}:{k}:synopsis"))
                continue
            for args in _commands(line, script=False):
                cases.append(pytest.param(("parse", args), id=f"{path.name}:{k}"))
        for k, line in enumerate(text.splitlines(), start=1):
            for m in _INLINE.finditer(line):
                cases.append(pytest.param(("names", m.group(1)), id=f"{path.name}:{k}:inline"))
    for name, cmd in _all_commands():
        for k, line in enumerate(((cmd.help or "") + "\n" + (cmd.epilog or "")).splitlines(), start=1):
            if re.match(r"^\s{2,}edgebp\s", line):  # an example (indented), not prose
                for args in _commands(line, script=False):
                    cases.append(pytest.param(("parse", args), id=f"help:{name}:{k}"))
    for k, line in _script_lines(DEMO.read_text()):
        for args in _commands(line, script=True):
            cases.append(pytest.param(("parse", args), id=f"{DEMO.name}:{k}"))
    return cases


def _rest(ctx: click.Context) -> list[str]:
    # a group's unparsed tokens: the sub-command and its arguments (click 8.2 keeps the first
    # in _protected_args; protected_args is deprecated there)
    return list(getattr(ctx, "_protected_args", [])) + list(ctx.args)


def _parse(args: list[str]) -> None:
    """Parse ``edgebp ARGS`` down to the last sub-command, as ``edgebp`` would, without running it."""
    ctx = cli.make_context("edgebp", list(args), resilient_parsing=False)
    group, rest = cli, _rest(ctx)
    while isinstance(group, click.Group):
        if not rest:
            return  # `edgebp data` alone: the group's help
        name, cmd, rest = group.resolve_command(ctx, rest)
        assert cmd is not None, f"no command {name!r}"
        ctx = cmd.make_context(name, list(rest), parent=ctx, resilient_parsing=False)
        group, rest = cmd, _rest(ctx)
    old = [k for k, v in ctx.params.items() if k.startswith("_deprecated_") and v is not None]
    assert not old, f"deprecated spelling {old[0][len('_deprecated_'):].replace('_', '-')!r}: use the current option"


def _names_check(text: str) -> None:
    """Every ``--option`` that ``text`` (a synopsis or a fragment) gives to its edgebp
    sub-command is one of that command's current options."""
    words = text.replace("python -m edgebp", "edgebp").split()
    words = words[words.index("edgebp") + 1:]
    cmd, ctx = cli, click.Context(cli, info_name="edgebp")
    while isinstance(cmd, click.Group) and words and not words[0].startswith("-"):
        sub = cmd.get_command(ctx, words[0].strip("`'\".,;:()"))
        if sub is None:
            if cmd is cli:
                raise AssertionError(f"edgebp {words[0]}: no such command")
            break
        cmd, words = sub, words[1:]
    known = {o for p in cmd.params if isinstance(p, click.Option) and not p.hidden for o in p.opts + p.secondary_opts}
    known |= {"--help", "-h", "--version", "-v", "--verbose"}
    for w in words:
        for opt in re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", w):
            assert opt in known, f"edgebp {cmd.name} {opt}: no such option ({text.strip()})"


EXAMPLES = _examples()


def test_the_docs_have_examples():
    # the extractor finds the commands at all (a broken extractor would pass everything)
    assert len(EXAMPLES) > 40
    assert sum(p.id.startswith("demo.sh") for p in EXAMPLES) >= 10
    assert sum(p.values[0][0] == "parse" for p in EXAMPLES) > 40
    assert sum(p.id.startswith("help:") for p in EXAMPLES) >= 20


@pytest.mark.parametrize("case", EXAMPLES)
def test_doc_command_parses(case):
    how, args = case
    if how == "names":
        _names_check(args)
        return
    try:
        _parse(args)
    except click.exceptions.Exit:
        pass  # --help, --version
    except click.BadParameter as exc:
        if "does not exist" not in exc.format_message():  # a placeholder file name is fine
            raise AssertionError(f"edgebp {shlex.join(args)}: {exc.format_message()}") from None
    except click.ClickException as exc:
        raise AssertionError(f"edgebp {shlex.join(args)}: {exc.format_message()}") from None


def test_a_nonexistent_option_fails():
    """The check can fail: docs/serial-protocol.md once showed `--in`, which never existed."""
    with pytest.raises(click.NoSuchOption):
        _parse(["run", "--in", "serial.log"])
    with pytest.raises(click.NoSuchOption):  # a group's sub-command is parsed too
        _parse(["data", "synth", "--out", "c/", "--in", "x"])
    with pytest.raises(AssertionError, match="no such option"):
        _names_check("edgebp run --stream serial.log [--in FILE]")
    with pytest.raises(AssertionError, match="no such option"):
        _names_check("edgebp serve --out-dir DIR")  # a hidden alias is not the vocabulary
    _names_check("edgebp data synth --subjects 4 [--out DIR]")
    with pytest.raises(AssertionError, match="deprecated spelling"):
        _parse(["run", "--stream", "serial.log", "--summary-json", "s.json"])
    assert _commands("edgebp sim --source synth:3 --out - --truth t.csv | edgebp run --stream - > bp.csv", script=False) == [
        ["sim", "--source", "synth:3", "--out", "-", "--truth", "t.csv"], ["run", "--stream", "-"]]
