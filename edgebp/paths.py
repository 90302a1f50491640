"""Where edgebp finds things: the shared real recordings, a run's data and the packaged assets.

No absolute paths: the real data are found beside the repository (``../shared/data`` from
the repository root) unless ``EDGEBP_DATA`` names another directory. A run or bundle records
its data as given (``../shared/data/challenge2015``); :func:`data_path_resolve` finds it again
from any directory, from a checkout or from an installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).resolve().parent / "assets"


def in_checkout() -> bool:
    """True when edgebp runs from a source checkout (editable install), not an installed copy."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "edgebp" / "paths.py").is_file()


def shared_data_dir() -> Path:
    """The directory of real recordings: ``$EDGEBP_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("EDGEBP_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def data_path_candidates(ref: str | os.PathLike) -> list[Path]:
    """Where a data reference may be, in the order :func:`data_path_resolve` tries them.

    1. as given (relative to the current directory);
    2. relative to the repository root, when edgebp runs from a checkout;
    3. under ``$EDGEBP_DATA`` by its last path component(s) (``EDGEBP_DATA=/x/data`` finds
       ``../shared/data/challenge2015`` as ``/x/data/challenge2015``), or ``$EDGEBP_DATA``
       itself when it is that folder (same last component). Without ``EDGEBP_DATA``, from a
       checkout: the same under ``<repo>/../shared/data``.

    Examples
    --------
    >>> import os
    >>> os.environ["EDGEBP_DATA"] = "/x/data"
    >>> [str(p) for p in data_path_candidates("../shared/data/challenge2015")][-3:]
    ['/x/data/challenge2015', '/x/data/data/challenge2015', '/x/data/shared/data/challenge2015']
    >>> del os.environ["EDGEBP_DATA"]
    """
    p = Path(ref).expanduser()
    out = [p]
    if not p.is_absolute() and in_checkout():
        out.append(REPO_ROOT / p)
    env = os.environ.get("EDGEBP_DATA")
    base = Path(env).expanduser() if env else (REPO_ROOT.parent / "shared" / "data" if in_checkout() else None)
    parts = [x for x in p.parts if x not in ("..", ".", p.anchor)]
    if base is not None and parts:
        out += [base.joinpath(*parts[-k:]) for k in range(1, len(parts) + 1)]
        if base.name == parts[-1]:
            out.append(base)
    seen, uniq = set(), []
    for c in out:
        if str(c) not in seen:
            seen.add(str(c))
            uniq.append(c)
    return uniq


def data_path_resolve(ref: str | os.PathLike) -> Path:
    """The existing path a data reference names (see :func:`data_path_candidates`).

    Raises
    ------
    FileNotFoundError
        One line naming the reference and every place tried.
    """
    tried = data_path_candidates(ref)
    for c in tried:
        if c.exists():
            return c
    hint = "" if os.environ.get("EDGEBP_DATA") else "; set EDGEBP_DATA to the folder holding it"
    raise FileNotFoundError(2, f"data not found (--data); tried {', '.join(str(c) for c in tried)}{hint} or give --data DIR", str(ref))
