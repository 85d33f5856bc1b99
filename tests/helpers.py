"""Shared test harnesses.

``assert_resumes(make_iterator)`` is the checkpoint conformance check every
stateful iterator runs: it records the state before every batch, restores a
fresh iterator from each (after a JSON round trip) and checks that the rest
of the stream is identical, that the state keeps the same key structure at
every step, and that loading then saving a state does not drift.
"""
from __future__ import annotations

import itertools
import json
from typing import Any, Callable

import numpy as np

__all__ = ["assert_batches_equal", "assert_resumes", "key_structure", "stream"]


def _as_list(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)):
        return [_as_list(b) for b in batch]
    if isinstance(batch, np.ndarray):
        return ("array", batch.dtype.str, batch.shape, batch.tolist())
    return batch


def assert_batches_equal(a: list, b: list) -> None:
    """Assert two lists of batches are equal, element by element, dtypes included."""
    assert len(a) == len(b), f"{len(a)} batches != {len(b)} batches"
    for i, (x, y) in enumerate(zip(a, b)):
        assert _as_list(x) == _as_list(y), f"batch {i} differs:\n{x!r}\n!=\n{y!r}"


def stream(it: Any, limit: int | None = None) -> list:
    """Return the batches of ``it`` (at most ``limit``)."""
    return list(itertools.islice(it, limit))


def key_structure(state: Any) -> Any:
    """Return the nested key structure of a state (values ignored)."""
    if isinstance(state, dict):
        return {k: key_structure(v) for k, v in sorted(state.items()) if not isinstance(v, (dict, type(None)))} | {
            k: "dict-or-none" for k, v in state.items() if isinstance(v, (dict, type(None)))
        }
    if isinstance(state, list) and state and all(isinstance(s, dict) for s in state):
        return [key_structure(s) for s in state]
    return "value"


def assert_resumes(make_iterator: Callable[[], Any], limit: int | None = None, every: int = 1) -> list:
    """Check that restoring at every step reproduces the uninterrupted tail.

    Parameters
    ----------
    make_iterator : callable
        Builds a fresh iterator of the same pipeline (with fresh RNG objects).
    limit : int, optional
        For endless streams: how many batches to compare.
    every : int
        Check every ``every``-th step (the first and last are always checked).

    Returns the reference stream.
    """
    reference = stream(make_iterator(), limit)
    total = len(reference)
    it = make_iterator()
    states = []
    for k in range(total + 1):
        state = it.state_dict()
        states.append(json.loads(json.dumps(state)))
        if k < total:
            next(it)
    structure = key_structure(states[0])
    steps = sorted(set(range(0, total + 1, every)) | {total})
    for k in steps:
        state = states[k]
        assert key_structure(state) == structure, f"state structure changed at step {k}"
        fresh = make_iterator()
        fresh.load_state_dict(state)
        again = json.loads(json.dumps(fresh.state_dict()))
        assert again == state, f"load then save drifted at step {k}"
        tail = stream(fresh, total - k)
        assert_batches_equal(tail, reference[k:])
        if limit is None:
            assert stream(fresh, 1) == [], f"restored stream at step {k} did not end"
    return reference
