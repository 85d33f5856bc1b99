"""Module-level map functions and array-likes for the profiling and autotune tests (picklable under spawn)."""
from __future__ import annotations

import time

import numpy as np


def sleepy_map(X, y, seconds=0.05):
    """A map function that only waits: ``seconds`` per batch."""
    time.sleep(seconds)
    return X, y


def quick_map(X, y):
    return X + 1, y


def python_map(X, y, rounds=20_000):
    """A map function that holds the GIL: a pure Python loop per batch."""
    acc = 0
    for i in range(rounds):
        acc += i * i % 7
    return X + (acc % 2), y


class SlowRows:
    """An array-like whose every read waits ``seconds`` (a slow disk), then returns the rows."""

    def __init__(self, n, seconds):
        self.data = np.arange(n * 2, dtype=np.int64).reshape(n, 2)
        self.seconds = seconds

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        time.sleep(self.seconds)
        return self.data[index]


def failing_map(X, y, bad=5, bs=4):
    """Raises on batch ``bad`` of an in-order ``arange`` source of batch size ``bs``."""
    if X[0] // bs == bad:
        raise ValueError(f"bad batch {bad}")
    return X, y


def sleepy_map_one(X, seconds=0.02):
    """``sleepy_map`` for one-array sources."""
    time.sleep(seconds)
    return (X,)


def failing_rows_map(X, bad_row=20):
    """For ``SlowRows``: raises on the batch that starts at row ``bad_row``."""
    if X[0, 0] == 2 * bad_row:
        raise ValueError(f"bad row {bad_row}")
    return (X,)


def sleepy_failing_map(X, y, bad=12, bs=4, seconds=0.02):
    """Sleeps like ``sleepy_map``; raises on batch ``bad`` of an in-order ``_ds`` of batch size ``bs``."""
    time.sleep(seconds)
    if X[0, 0] == 2 * bad * bs:
        raise ValueError(f"bad batch {bad}")
    return X, y
