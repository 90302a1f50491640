#!/usr/bin/env python
"""Kept for old command lines: the scorer is now the installed command `edgebp score`.

    scripts/compare_truth.py BP_CSV TRUTH_CSV [options]  ==  edgebp score BP_CSV TRUTH_CSV [options]

See `edgebp score --help` (--max-dt is accepted as the old name of --tolerance).
"""

from __future__ import annotations

import sys

from edgebp.cli import main

if __name__ == "__main__":
    sys.argv = ["edgebp", "score", *sys.argv[1:]]
    main()
