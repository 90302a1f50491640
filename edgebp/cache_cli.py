"""``edgebp cache``: what edgebp keeps on disk between runs, where, how large, and cleaning it.

Everything edgebp caches can be rebuilt; deleting it costs time on the next run, never results.

* ``prepared``: records preprocessed for a model (``<cache>/prepared/*.shards/``, memory-mapped shards written by
  ``edgebp train``/``evaluate``/``bench``; keyed by the data's and the chain's hash).
* ``synth``: the built-in synthetic cohort (``<cache>/synth-<hash>/``, WFDB files).
* ``bench``: device logs and the seeds' anchor ONNX files of ``edgebp bench``
  (``<cache>/bench/``).
* ``numba``: the compiled processing kernels (``*.nbi``/``*.nbc``, a few MB): in
  ``$NUMBA_CACHE_DIR`` when set (numba then uses no other place), else in the ``__pycache__``
  folders beside the kernels' source (numba's default) or, where those are not writable, in
  ``~/.cache/edgebp/numba`` (:func:`edgebp.paths.numba_cache_configure`). Cleaning them
  costs the next run a compile of about 40 s.
* ``tensorrt``: TensorRT engines built by ``--backend tensorrt`` (``<cache>/tensorrt/*.engine``
  with a ``.json`` key beside each: model sha256, TensorRT version, GPU, precision, profile;
  :mod:`edgebp.runtime.tensorrt_backend`). An engine only runs on the TensorRT version and GPU
  that built it; cleaning costs the next run a build (seconds to minutes per model).
* ``onnx-checked``: the sha256 and graph inputs of every bundle model that passed the loader's
  parse and ``onnx.checker`` (``<cache>/onnx-checked.json``, :mod:`edgebp.runtime.bundle`), so
  that loading the same bytes again needs no ``onnx`` import; cleaning costs the next load
  about 0.1 s.

``<cache>`` is ``$EDGEBP_CACHE``, default ``~/.cache/edgebp``. Only the entries above are
ever removed, so an ``EDGEBP_CACHE`` pointing at a shared folder loses nothing else.

Examples
--------
>>> import os, tempfile
>>> os.environ["EDGEBP_CACHE"] = tempfile.mkdtemp()
>>> [e.what for e in cache_entries()][:3]
['prepared', 'synth', 'bench']
>>> del os.environ["EDGEBP_CACHE"]
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from edgebp.cli import CliError
from edgebp.paths import cache_root

log = logging.getLogger(__name__)

KINDS = ("prepared", "synth", "bench", "numba", "tensorrt", "onnx-checked")
NUMBA_SUFFIXES = (".nbi", ".nbc")


@dataclass
class CacheEntry:
    """One kind of cached data: where it lives and the files it holds (paths to remove)."""

    what: str
    where: list[Path]
    files: list[Path] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)  # whole folders that belong to the cache

    @property
    def size(self) -> int:
        return sum(_size(f) for f in self.files)


def _size(f: Path) -> int:
    try:
        return f.lstat().st_size
    except OSError:
        return 0


def _files_under(d: Path) -> list[Path]:
    if not d.is_dir():
        return []
    return [p for p in d.rglob("*") if p.is_file() or p.is_symlink()]


def _numba_locations() -> list[Path]:
    """Where edgebp's numba kernels can be cached. With ``NUMBA_CACHE_DIR`` set numba uses
    that folder and no other; otherwise the ``__pycache__`` folders beside the kernels'
    source (numba's default) and the fall-back folders edgebp points numba at when those are
    not writable (:func:`edgebp.paths.numba_cache_candidates`)."""
    import edgebp
    from edgebp import paths

    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return [Path(env).expanduser()]
    # the packages installed from other folders (package-dir) are found by spec, so none of
    # them is imported here
    pkgs = [Path(edgebp.__file__).resolve().parent]
    for sub in ("runtime", "train", "export", "firmware_sim"):
        try:
            spec = importlib.util.find_spec(f"edgebp.{sub}")
        except (ImportError, ValueError):
            spec = None
        for loc in (spec.submodule_search_locations or []) if spec else []:
            pkgs.append(Path(loc).resolve())
    out: list[Path] = []
    for pkg in pkgs:
        out += sorted(p for p in pkg.rglob("__pycache__") if p.is_dir())
    candidates = getattr(paths, "numba_cache_candidates", None)
    out += candidates() if callable(candidates) else [cache_root() / "numba"]
    seen, uniq = set(), []
    for p in out:
        if str(p) not in seen:
            seen.add(str(p))
            uniq.append(p)
    return uniq


def cache_entries() -> list[CacheEntry]:
    """The cache's entries by kind (``prepared``, ``synth``, ``bench``, ``numba``, ``tensorrt``, ``onnx-checked``), as they are now."""
    from edgebp import paths
    from edgebp.runtime.tensorrt_backend import cache_dir as tensorrt_cache_dir

    root = cache_root()
    synth_dirs = sorted(p for p in root.glob("synth-*") if p.is_dir()) + sorted(p for p in root.glob(".synth-*") if p.is_dir())
    entries = [
        CacheEntry("prepared", [root / "prepared"], _files_under(root / "prepared"), [root / "prepared"]),
        CacheEntry("synth", [root / "synth-*"], [f for d in synth_dirs for f in _files_under(d)], synth_dirs),
        CacheEntry("bench", [root / "bench"], _files_under(root / "bench"), [root / "bench"]),
    ]
    locs = _numba_locations()
    nb = []
    for d in locs:
        if d.is_dir():
            # the numba cache folder may hold other programs' kernels: only cache files, by suffix
            nb += [p for p in d.rglob("*") if p.suffix in NUMBA_SUFFIXES and p.is_file()]
    # shown: the folders that hold kernels now; with none, where the next compile will write
    where = [d for d in locs if any(d in p.parents for p in nb)]
    if not where:
        current = getattr(paths, "numba_cache_dir", None)
        where = [current() or locs[0]] if callable(current) else locs[:1]
    entries.append(CacheEntry("numba", where, nb, []))
    trt = tensorrt_cache_dir()
    entries.append(CacheEntry("tensorrt", [trt], _files_under(trt), [trt]))
    chk = root / "onnx-checked.json"
    entries.append(CacheEntry("onnx-checked", [chk], [chk] if chk.is_file() else [], []))
    return entries


def _human(n: int) -> str:
    """Bytes in binary units (1 KiB = 1024 B), as the rest of edgebp states sizes."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GiB"


def _rel(p: Path) -> str:
    """A path as the user would type it: ``~/...`` under the home folder."""
    home = Path.home()
    try:
        return "~/" + str(p.relative_to(home))
    except ValueError:
        return str(p)


@click.group(name="cache")
def cache_group() -> None:
    """What edgebp caches on disk (prepared records, the synthetic cohort, bench logs, numba
    kernels, TensorRT engines): ``info`` shows it, ``clean`` removes it. Everything there is rebuilt on demand.

    \b
    Example:
        edgebp cache info
        edgebp cache clean --what prepared --yes
    """


@cache_group.command(name="info")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: per kind, its locations, file count and bytes.")
def cache_info_command(as_json: bool) -> None:
    """Where each kind of cached data is and how large it is (1 KiB = 1024 B).

    \b
    Example:
        edgebp cache info
        EDGEBP_CACHE=scratch/edgebp-cache edgebp cache info --json
    """
    entries = cache_entries()
    if as_json:
        click.echo(json.dumps({"root": str(cache_root()), "total_bytes": sum(e.size for e in entries),
                               "entries": [{"what": e.what, "where": [str(w) for w in e.where], "files": len(e.files), "bytes": e.size}
                                           for e in entries]}))
        return
    click.echo(f"cache root: {_rel(cache_root())} ($EDGEBP_CACHE)")
    click.echo(f"{'what':<12} {'size':>9} {'files':>6}  where")
    for e in entries:
        click.echo(f"{e.what:<12} {_human(e.size):>9} {len(e.files):>6}  {', '.join(_rel(w) for w in e.where)}")
    click.echo(f"{'total':<12} {_human(sum(e.size for e in entries)):>9} {sum(len(e.files) for e in entries):>6}")


@cache_group.command(name="clean")
@click.option("--what", "what", type=click.Choice(("all",) + KINDS), default="all", show_default=True, help="Which kind of cached data to remove.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed when not on a terminal).")
def cache_clean_command(what: str, yes: bool) -> None:
    """Remove cached data; the next run rebuilds what it needs (numba recompiles its kernels,
    prepared records are prepared again).

    \b
    Example:
        edgebp cache clean --what prepared --yes
        edgebp cache clean
    """
    kinds = KINDS if what == "all" else (what,)
    chosen = [e for e in cache_entries() if e.what in kinds]
    total = sum(e.size for e in chosen)
    n_files = sum(len(e.files) for e in chosen)
    if n_files == 0 and not any(d.exists() for e in chosen for d in e.dirs):
        click.echo(f"nothing cached ({', '.join(kinds)})")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(f"would remove {n_files} files ({_human(total)}) of {', '.join(kinds)}; pass --yes to confirm when not on a terminal")
        click.confirm(f"remove {n_files} files ({_human(total)}) of {', '.join(kinds)}?", abort=True)
    for e in chosen:
        for d in e.dirs:
            shutil.rmtree(d, ignore_errors=True)
        for f in e.files:
            if f.exists() or f.is_symlink():
                try:
                    f.unlink()
                except OSError as exc:
                    log.warning("%s: not removed (%s)", f, exc.strerror or exc)
    click.echo(f"removed {n_files} files ({_human(total)}) of {', '.join(kinds)}")
