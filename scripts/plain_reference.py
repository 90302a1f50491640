#!/usr/bin/env python
"""The plain reference of the live path's cost (numpy decode, scipy filters, ONNX Runtime in
blocks, no quality handling): see edgebp/bench/plain_reference.py. ``edgebp bench --parts live``
measures it beside ``edgebp run``.

    python scripts/plain_reference.py serial.log --bundle default --variant int8
"""
import sys

from edgebp.bench.plain_reference import main

if __name__ == "__main__":
    sys.exit(main())
