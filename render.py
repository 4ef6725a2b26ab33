#!/usr/bin/env python
"""Render a talking-head video: `python render.py --audio a.wav --emotion angry --view 30`.

A thin wrapper over `emotalk3d render` (same options; see `python render.py --help` and
docs/inference.md).
"""

import sys

from emotalk3d.inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
