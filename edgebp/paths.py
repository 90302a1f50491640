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


def cache_root() -> Path:
    """``$EDGEBP_CACHE`` or ``~/.cache/edgebp``: where edgebp keeps what it can rebuild (the
    TensorRT engines, the loader's record of checked models; ``edgebp cache``)."""
    return Path(os.environ.get("EDGEBP_CACHE", Path.home() / ".cache" / "edgebp")).expanduser()


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


# ---------------------------------------------------------------- numba's kernel cache
# The processing kernels are numba functions with cache=True. numba keeps their machine code
# beside the source (__pycache__) or, when that is not writable (an installed package), in the
# user's cache (~/.cache/numba); when neither is writable (a service user without a writable
# HOME) it raises at import. numba_cache_configure points NUMBA_CACHE_DIR at a place that is.
KERNELS_DIR = Path(__file__).resolve().parent / "processing"
# a cold compile of every kernel the runtime uses, measured on this project's 2-core machine
# (`NUMBA_CACHE_DIR=$(mktemp -d) edgebp run --stream serial.log` on a 1-min log: 36 s in the
# issue 17 review, 47 s wall here under load, against 1.7 s warm)
COLD_COMPILE_S = 40


def _writable_dir(path: Path) -> bool:
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def numba_cache_candidates() -> list[Path]:
    """Where :func:`numba_cache_configure` may put numba's cache, in order:
    ``$XDG_CACHE_HOME/edgebp/numba``, ``~/.cache/edgebp/numba``, then
    ``<tempdir>/edgebp-numba-<uid>`` (lost at reboot: the kernels compile again)."""
    import tempfile

    out = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        out.append(Path(xdg).expanduser() / "edgebp" / "numba")
    home = os.environ.get("HOME")
    if home:
        out.append(Path(home).expanduser() / ".cache" / "edgebp" / "numba")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    out.append(Path(tempfile.gettempdir()) / f"edgebp-numba-{uid}")
    return out


def numba_cache_dir() -> Path | None:
    """The directory numba caches edgebp's kernels in (None: nowhere writable)."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return Path(env)
    pyc = KERNELS_DIR / "__pycache__"
    if _writable_dir(pyc):
        return pyc
    return None


def numba_cache_configure() -> Path | None:
    """Make sure numba has a writable cache directory; returns it (None: none found).

    Nothing changes when ``NUMBA_CACHE_DIR`` is set or numba's own place (``__pycache__``
    beside the kernels) is writable. Otherwise ``NUMBA_CACHE_DIR`` is set to the first
    writable of :func:`numba_cache_candidates` (also in ``numba.config`` when numba is
    already imported). Call it before the first kernel module is imported.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    pyc = KERNELS_DIR / "__pycache__"
    if _writable_dir(pyc):
        return pyc
    for cand in numba_cache_candidates():
        if _writable_dir(cand):
            os.environ["NUMBA_CACHE_DIR"] = str(cand)
            import sys

            if "numba" in sys.modules:
                sys.modules["numba"].config.CACHE_DIR = str(cand)
            return cand
    return None


def numba_cache_warm(cache_dir: Path | None = None) -> bool:
    """Whether the kernels' compiled code is in the cache (index files present for them)."""
    d = numba_cache_dir() if cache_dir is None else Path(cache_dir)
    if d is None or not d.is_dir():
        return False
    if d.name == "__pycache__" and d.parent == KERNELS_DIR:
        return any(d.glob("*.nbi"))
    # NUMBA_CACHE_DIR: numba keeps each source folder in <dirname>_<sha1 of its path>
    import hashlib

    sub = d / f"{KERNELS_DIR.name}_{hashlib.sha1(str(KERNELS_DIR).encode()).hexdigest()}"
    return any(sub.glob("*.nbi"))


def numba_compile_announce(echo=None, aot: bool = False) -> bool:
    """One line on standard error before a run whose kernels are not cached yet:
    ``compiling numba kernels (first run, ~36 s; cached in DIR)``. Returns whether it said so.
    Nothing to say when the kernels were compiled ahead of time (``aot``: the caller's
    :func:`edgebp.processing.kernels.aot_module` is not None; this module may not import it)."""
    if aot or numba_cache_warm():
        return False
    import sys

    d = numba_cache_dir()
    line = f"compiling numba kernels (first run, ~{COLD_COMPILE_S} s; " + (f"cached in {d})" if d else "no writable cache directory: every run compiles)")
    (echo or (lambda s: sys.stderr.write(s + "\n")))(line)
    return True
