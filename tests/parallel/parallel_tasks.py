"""Module-level task functions and array-likes for the pool tests (picklable under spawn)."""
from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

import numpy as np


def square(x):
    return x * x


def pid_of(_):
    time.sleep(0.002)
    return os.getpid()


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad {x}")
    return x


class TwoArgError(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


class LockedError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()


def raise_two_arg(_):
    raise TwoArgError("x", "y")


def raise_locked(_):
    raise LockedError("holds a lock")


def return_lambda(x):
    return lambda: 0


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def bad_batch(X, y, bad=7, bs=10):
    """Map fn for W1: raises on batch ``bad`` of an in-order arange source."""
    if X[0] // bs == bad:
        raise ValueError(f"bad {bad}")
    return X, y


def add_noise(X, y, rng=None):
    """Seeded map: per-batch noise from the generator batchup passes in."""
    return X + rng.integers(0, 1000, size=X.shape), y


def global_draw(X):
    return (np.array([np.random.random()]),)


#: Set by a test to let tasks blocked in :func:`crash_on` (``how="block"``) finish.
RELEASE = threading.Event()


def crash_on(X, bad, how):
    if X[0] == bad:
        if how == "segv":
            ctypes.string_at(0)
        elif how == "exit":
            sys.exit(123)
        elif how == "sleep":
            time.sleep(3600)
        elif how == "block":
            RELEASE.wait()
        elif how == "systemexit":
            raise SystemExit(7)
        elif how == "keyboardinterrupt":
            raise KeyboardInterrupt("in a task")
    return (X,)


class LoadFromDisk:
    """The array-like of BatchUp 0.2.3's README: samples loaded from files on demand (here .npy files)."""

    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return np.load(self.paths[index])
        if isinstance(index, slice):
            return np.stack([np.load(p) for p in self.paths[index]])
        if isinstance(index, np.ndarray):
            if index.ndim != 1:
                raise ValueError(f"index array should have 1 dimension, not {index.ndim}")
            return np.stack([np.load(self.paths[i]) for i in index])
        raise TypeError(f"index should be an int, slice or array, not {type(index)}")


#: A ``multiprocessing.Value`` counting map calls; set before a pool forks so workers inherit it.
CALLS = None


def counted_bad_batch(X, y, bad=7, bs=10):
    """``bad_batch`` that also counts its calls in :data:`CALLS`."""
    if CALLS is not None:
        with CALLS.get_lock():
            CALLS.value += 1
    return bad_batch(X, y, bad, bs)


def sized(n, fill):
    """A result of ``n`` float64 values equal to ``fill`` (varying sizes exercise slot growth)."""
    return np.full(n, fill, dtype=np.float64)


def total(arr, k):
    return float(arr.sum()) + k


def nested_pool(_):
    """A task that tries to start a process pool inside a process worker."""
    from batchup.parallel import WorkerProcessPool

    try:
        WorkerProcessPool(1)
    except RuntimeError as e:
        return f"RuntimeError: {e}"
    return "started"


def use_slow_module(X):
    """A map function whose module is imported inside the worker (while the parent may be importing it)."""
    import slow_import_mod

    return (slow_import_mod.double(X),)
