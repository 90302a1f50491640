"""Where edgebp finds things: the shared real recordings and the packaged assets.

No absolute paths: the real data are found beside the repository (``../shared/data`` from
the repository root) unless ``EDGEBP_DATA`` names another directory.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).resolve().parent / "assets"


def shared_data_dir() -> Path:
    """The directory of real recordings: ``$EDGEBP_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("EDGEBP_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()
