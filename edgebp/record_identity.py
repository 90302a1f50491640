"""Record identity (name plus a hash of the samples) and leak-proof split selection.

A run or bundle remembers which records it trained on. Remembering them by path (or by name
alone) lets a training record back in whenever the same data arrive through another path, a
copy, or another reader. Here a record is known by its **identity**: its name plus
:func:`samples_sha256`, a short sha256 of its samples in a canonical byte form that does not
depend on the path, the file format or the reader:

- every channel of the record as read (before any cropping or preprocessing), ordered by
  canonical name, then ECG lead (upper case), then its own bytes (so file order and labels do
  not matter: ``PLETH`` and ``Pleth`` are both ``ppg``);
- per channel a text line ``name|lead|fs|n`` (``fs`` in Hz with 6 decimals, ``n`` samples),
  then the samples in the channel's physical units rounded to :data:`QUANTUM` (1e-4; round
  half to even of ``x * 10**4`` in float64) as little-endian int64, NaN/inf as ``-2**63``;
- the digest is the first :data:`HASH_HEX` hex digits of the sha256 over
  :data:`IDENTITY_SCHEME`, then every channel's line and samples.

The record name is not part of the hash: a renamed copy has the same hash. A reader that gives
other channels (a CSV export that drops a lead, a ``channel_map``) gives another hash; the
name still matches then, which is why selection matches by hash *and* by name.

:func:`split_select` chooses the records to score from a run's or bundle's split (names, plus
identities where recorded) and says what it excluded. It takes prepared records, identities or
``(name, sha256)`` pairs, so ``edgebp evaluate``, ``edgebp bench`` and a streaming scorer share
it. Torch-free.

Examples
--------
>>> import numpy as np
>>> from edgebp.record import Channel, Record
>>> rec = Record("r1", [Channel.from_label("ABP", np.array([80.0, 120.0, np.nan]), fs=125.0)])
>>> ident = record_identity(rec)
>>> ident.record, len(ident.sha256)
('r1', 16)
>>> split = {"train": ["r1"], "val": [], "test": ["r2"], "identity": [ident.to_dict()]}
>>> chosen, sel = split_select([ident, RecordIdentity("r2", "0" * 16)], split, "all")
>>> [c.record for c in chosen], sel["excluded"]
(['r2'], {'train': 1, 'val': 0})
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from edgebp.record import Record

log = logging.getLogger(__name__)

#: names the canonical byte form; change it (and the hashes) if the form ever changes
IDENTITY_SCHEME = "edgebp-record-samples/1"
#: samples are rounded to this step of their physical unit before hashing
QUANTUM = 1e-4
#: hex digits kept of the sha256 (64 bits)
HASH_HEX = 16
_NAN_CODE = np.iinfo(np.int64).min
SPLITS = ("train", "val", "test")
TRAINED = ("train", "val")

T = TypeVar("T")


@dataclass(frozen=True)
class RecordIdentity:
    """A record's identity: its name and :func:`samples_sha256` of its samples."""

    record: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"record": self.record, "sha256": self.sha256}

    def __str__(self) -> str:
        return f"{self.record} (sha256 {self.sha256})"


def _channel_bytes(signal: np.ndarray) -> bytes:
    x = np.asarray(signal, dtype=np.float64)
    finite = np.isfinite(x)
    q = np.full(x.shape, _NAN_CODE, dtype="<i8")
    q[finite] = np.rint(x[finite] / QUANTUM).astype("<i8")
    return q.tobytes()


def samples_sha256(record: Record) -> str:
    """The short sha256 of a record's samples in the canonical byte form (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from edgebp.record import Channel, Record
    >>> a = Record("x", [Channel.from_label("II", np.ones(4), 250.0), Channel.from_label("PLETH", np.zeros(4), 250.0)])
    >>> b = Record("y", [Channel.from_label("Pleth", np.zeros(4), 250.0), Channel.from_label("II", np.ones(4) + 1e-9, 250.0)])
    >>> samples_sha256(a) == samples_sha256(b)
    True
    """
    parts = []
    for c in record.channels:
        body = _channel_bytes(c.signal)
        head = f"{c.name}|{(c.lead or '').upper()}|{float(c.fs):.6f}|{len(c.signal)}\n".encode()
        parts.append((c.name, (c.lead or "").upper(), hashlib.sha256(head + body).hexdigest(), head, body))
    h = hashlib.sha256(IDENTITY_SCHEME.encode() + b"\n")
    for _name, _lead, _digest, head, body in sorted(parts, key=lambda p: p[:3]):
        h.update(head)
        h.update(body)
    return h.hexdigest()[:HASH_HEX]


def record_identity(record: Record) -> RecordIdentity:
    """``RecordIdentity(record.record_id, samples_sha256(record))``."""
    return RecordIdentity(str(record.record_id), samples_sha256(record))


def identity_of(item: Any) -> RecordIdentity:
    """The identity of a prepared record (``record_id``, ``sha256``), a :class:`RecordIdentity`,
    a :class:`~edgebp.record.Record` (hashed now), a ``{"record", "sha256"}`` dict or a
    ``(name, sha256)`` pair. A missing hash is ``""`` (matched by name only)."""
    if isinstance(item, RecordIdentity):
        return item
    if isinstance(item, Record):
        return record_identity(item)
    if isinstance(item, Mapping):
        return RecordIdentity(str(item["record"]), str(item.get("sha256") or ""))
    if isinstance(item, tuple) and len(item) == 2:
        return RecordIdentity(str(item[0]), str(item[1] or ""))
    if hasattr(item, "record_id"):
        return RecordIdentity(str(item.record_id), str(getattr(item, "sha256", "") or ""))
    raise TypeError(f"cannot tell the identity of a {type(item).__name__} (needs record_id and sha256)")


def split_with_identity(split: Mapping[str, Sequence[str]], identities: Mapping[str, str] | Iterable[Any]) -> dict:
    """``split`` (names per split) plus ``"identity"``: ``[{"record", "sha256"}, ...]`` for its
    train, val and test records, in that order; records without a known hash are left out.

    ``identities`` maps name -> sha256, or is an iterable of anything :func:`identity_of` reads.
    The names lists stay as they were, so readers of the older (names only) form keep working.
    """
    if isinstance(identities, Mapping):
        known = {str(k): str(v) for k, v in identities.items()}
    else:
        known = {i.record: i.sha256 for i in map(identity_of, identities)}
    out = {k: list(v) for k, v in split.items() if k != "identity"}
    out["identity"] = [{"record": n, "sha256": known[n]} for k in SPLITS for n in out.get(k, []) if known.get(n)]
    return out


@dataclass
class SplitIndex:
    """A run's or bundle's split, indexed by name and by hash."""

    names: dict[str, set[str]]
    by_hash: dict[str, str]  # sha256 -> split
    hash_of: dict[str, str]  # name -> sha256

    @property
    def has_hashes(self) -> bool:
        return bool(self.by_hash)

    def role_by_name(self, name: str) -> str | None:
        return next((k for k in SPLITS if name in self.names[k]), None)


def split_index(split: Mapping[str, Any] | None, where: str = "split") -> SplitIndex:
    """Read a split (``{"train": [...], "val": [...], "test": [...], "identity": [...]}``; the
    identity list may be absent in older runs and bundles).

    Raises
    ------
    ValueError
        A malformed split, naming ``where`` and the field.
    """
    split = split or {}
    names: dict[str, set[str]] = {}
    for k in SPLITS:
        v = split.get(k) or []
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise ValueError(f"{where}: split field {k!r} must be a list of record names")
        names[k] = set(v)
    role = {n: k for k in reversed(SPLITS) for n in names[k]}  # train wins over val over test
    by_hash: dict[str, str] = {}
    hash_of: dict[str, str] = {}
    ident = split.get("identity") or []
    if not isinstance(ident, (list, tuple)):
        raise ValueError(f"{where}: split field 'identity' must be a list of {{record, sha256}} objects")
    for i, e in enumerate(ident):
        if not (isinstance(e, Mapping) and isinstance(e.get("record"), str) and isinstance(e.get("sha256"), str) and e["sha256"]):
            raise ValueError(f"{where}: split field 'identity' entry {i} must be {{\"record\": NAME, \"sha256\": HEX}}")
        k = role.get(e["record"])
        if k is None:
            raise ValueError(f"{where}: split 'identity' entry {i} names {e['record']!r}, which is in no split")
        hash_of[e["record"]] = e["sha256"]
        if by_hash.get(e["sha256"]) not in TRAINED:  # a hash seen in train/val stays trained
            by_hash[e["sha256"]] = k
    return SplitIndex(names, by_hash, hash_of)


def _names(xs: list[str], k: int = 5) -> str:
    return ", ".join(xs[:k]) + (f" and {len(xs) - k} more" if len(xs) > k else "")


def split_select(records: Sequence[T], split: Mapping[str, Any] | SplitIndex | None, which: str,
                 include_training: bool = False) -> tuple[list[T], dict]:
    """Choose the records of ``which`` split, excluding training and validation records.

    Parameters
    ----------
    records : sequence
        Prepared records, :class:`RecordIdentity` objects or ``(name, sha256)`` pairs (see
        :func:`identity_of`); the chosen ones come back as given, in order.
    split : dict or SplitIndex
        The run's or bundle's split.
    which : {"test", "val", "all"}
        ``test``/``val``: the records of that split; ``all``: every record not used for
        training or validation.
    include_training : bool
        Only with ``all``: score every record, training and validation ones included.

    A record counts as a training (validation) record when its sha256 is that of one, or when
    its name is (name alone when the split has no hashes; a record with a training name but
    other samples is still excluded, with a warning). ``test``/``val`` records are found the
    same way, by hash or name.

    Returns
    -------
    (list, dict)
        The chosen records and the selection: ``which``, ``include_training``, ``n_records``
        (in the data), ``n_chosen``, ``excluded`` (``{"train": n, "val": n}``: training or
        validation records present and left out), ``included_training`` (those scored anyway,
        with ``include_training``), ``not_in_split`` (other records left out by
        ``test``/``val``), ``matched_by`` (``"sha256"`` or ``"name"``: how the split's records
        were recognised), ``match_counts`` and ``warnings`` (also logged).

    Raises
    ------
    ValueError
        Unknown ``which``, or ``include_training`` with ``test``/``val``.
    """
    if which not in ("test", "val", "all"):
        raise ValueError(f"split {which!r} is not valid; choose one of: test, val, all")
    if include_training and which != "all":
        raise ValueError(f"--include-training goes with --split all (--split {which} scores only the {which} records)")
    idx = split if isinstance(split, SplitIndex) else split_index(split)
    warnings: list[str] = []
    if not idx.has_hashes and any(idx.names[k] for k in TRAINED):
        warnings.append("the split records no sample hashes (made before edgebp recorded record identities): "
                        "training/validation records are recognised by name only, so a renamed copy would not be")
    chosen: list[T] = []
    excluded = {"train": 0, "val": 0}
    included = {"train": 0, "val": 0}
    counts = {"sha256": 0, "name": 0}
    not_in_split = 0
    renamed, differ, unhashed = [], [], []
    for item in records:
        ident = identity_of(item)
        r_hash = idx.by_hash.get(ident.sha256) if ident.sha256 else None
        r_name = idx.role_by_name(ident.record)
        if r_hash is not None:
            counts["sha256"] += 1
            if r_name is None or r_name != r_hash:
                renamed.append(f"{ident.record} (samples of a {r_hash} record)")
        elif r_name is not None:
            counts["name"] += 1
            known = idx.hash_of.get(ident.record)
            if known and ident.sha256:
                differ.append(ident.record)
            elif idx.has_hashes and not ident.sha256:
                unhashed.append(ident.record)
        roles = {r for r in (r_hash, r_name) if r}
        trained = next((k for k in TRAINED if k in roles), None)
        if which == "all":
            if trained is None:
                chosen.append(item)
            elif include_training:
                included[trained] += 1
                chosen.append(item)
            else:
                excluded[trained] += 1
        else:
            if which in roles and trained in (None, which):
                chosen.append(item)
            elif trained is not None and trained != which:
                excluded[trained] += 1
            else:
                not_in_split += 1
    if renamed:
        warnings.append(f"{len(renamed)} record(s) under another name carry the samples of the split's records: {_names(renamed)}")
    if differ:
        warnings.append(f"{len(differ)} record(s) have the name of one of the split's records but other samples "
                        f"(another reader, crop or version of the data?); treated as that record: {_names(differ)}")
    if unhashed:
        warnings.append(f"{len(unhashed)} record(s) come without a sample hash; matched by name only: {_names(unhashed)}")
    for w in warnings:
        log.warning("%s", w)
    info = {
        "which": which,
        "include_training": bool(include_training),
        "n_records": len(records),
        "n_chosen": len(chosen),
        "excluded": excluded,
        "included_training": included,
        "not_in_split": not_in_split,
        "matched_by": "sha256" if idx.has_hashes else "name",
        "match_counts": counts,
        "warnings": warnings,
    }
    return chosen, info


def selection_line(sel: Mapping[str, Any]) -> str:
    """The one line every accuracy table carries about which records it scored.

    Examples
    --------
    >>> selection_line({"which": "all", "n_records": 98, "n_chosen": 14, "excluded": {"train": 71, "val": 13},
    ...                 "include_training": False, "matched_by": "sha256"})
    'Records: 14 of 98 scored (split all); excluded 71 train + 13 val records (matched by sha256 and name)'
    >>> selection_line({"which": "all", "n_records": 98, "n_chosen": 98, "excluded": {"train": 0, "val": 0},
    ...                 "included_training": {"train": 71, "val": 13}, "include_training": True, "matched_by": "sha256"})
    'INCLUDES TRAINING RECORDS: 71 train + 13 val of 98; not a held-out result'
    """
    if sel.get("include_training"):
        inc = sel.get("included_training") or {}
        return (f"INCLUDES TRAINING RECORDS: {inc.get('train', 0)} train + {inc.get('val', 0)} val of {sel.get('n_records')}; "
                "not a held-out result")
    ex = sel.get("excluded") or {}
    how = "sha256 and name" if sel.get("matched_by") == "sha256" else "name only: the split has no sample hashes"
    line = (f"Records: {sel.get('n_chosen')} of {sel.get('n_records')} scored (split {sel.get('which')}); "
            f"excluded {ex.get('train', 0)} train + {ex.get('val', 0)} val records (matched by {how})")
    if sel.get("which") == "val":
        line += "; validation records were used for early stopping: not a held-out result"
    return line


__all__ = ["IDENTITY_SCHEME", "QUANTUM", "HASH_HEX", "RecordIdentity", "samples_sha256", "record_identity", "identity_of",
           "split_with_identity", "SplitIndex", "split_index", "split_select", "selection_line"]
