"""A module that takes a while to import: a thread importing it holds its import lock meanwhile."""
from __future__ import annotations

import time

time.sleep(2.0)


def double(x):
    return 2 * x
