"""Entry point of ``python -m batchup``; the commands live in :mod:`batchup._cli`.

Run ``python -m batchup --help`` for the commands (demo, info, fetch).
"""
from __future__ import annotations

import sys

from batchup._cli import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
