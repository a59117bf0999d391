#!/usr/bin/env python
"""The pegan benchmark: ``python scripts/bench.py --help``. The code is the package beside this
file, ``scripts/bench/`` (``core``: the cases, the measurement and the report; ``flops``: the
FLOP counter; ``reference``: the reference figures as data)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.core import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
