"""Usage errors (an unknown option, command or choice) are one line on stderr, not click's usage block."""

from __future__ import annotations

import pytest

from edgebp.cli import main


@pytest.mark.parametrize("argv, needle, usage", [
    (["sim", "--format", "bogus", "--out", "x.log"], "'--format'", True),
    (["evaluate", "default", "--bogus"], "--bogus", True),
    (["bogus"], "'bogus'", True),
    (["run", "default"], "--stream", False),  # the command's own check, not click's parser
])
def test_usage_error_is_one_line(argv: list[str], needle: str, usage: bool, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("Error: ") and needle in err[0]
    assert ("--help" in err[0]) == usage  # click's own errors say where help is, on the same line
