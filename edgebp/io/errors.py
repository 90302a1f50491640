"""The one error type of the readers: an unreadable file, named, with the reason."""

from __future__ import annotations

import os


class ReadError(ValueError):
    """A file edgebp cannot read; the message is ``"<path>: <reason>"``.

    A subclass of :class:`ValueError`, so the command line turns it into a one-line
    ``Error: ...`` instead of a traceback.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or record, or directory) that failed.
    reason : str
        What is wrong with it, in words a user can act on.

    Examples
    --------
    >>> err = ReadError("data/a103l.hea", "not a WFDB header")
    >>> str(err)
    'data/a103l.hea: not a WFDB header'
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Keep the two-argument form picklable (multiprocessing data loaders re-raise it).
        return (type(self), (self.path, self.reason))
