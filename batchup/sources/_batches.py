"""Measure, trim and flatten batches (tuples of arrays, possibly nested).

A tuple or list batch is measured by its first element, recursively; any
other batch by ``len()``. BatchUp 0.2 treated a list as a leaf (so a list of
two arrays measured 2); batchup measures and trims lists like tuples, which
fixes mean denominators for ``map`` functions that return lists.
"""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["batch_length", "flatten_batches", "prepare", "trim_batch"]


def batch_length(batch: Any) -> int:
    """Return the number of samples in ``batch``."""
    while isinstance(batch, (tuple, list)):
        if not batch:
            return 0
        batch = batch[0]
    return len(batch)


def trim_batch(batch: Any, length: int) -> Any:
    """Return ``batch`` cut to its first ``length`` samples, keeping its structure."""
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        # A namedtuple such as ChoiceBatch: trim the samples, keep the rest.
        return type(batch)(trim_batch(batch[0], length), *batch[1:])
    if isinstance(batch, tuple):
        return tuple(trim_batch(b, length) for b in batch)
    if isinstance(batch, list):
        return [trim_batch(b, length) for b in batch]
    return batch[:length]


def flatten_batches(batches: Sequence[Any]) -> tuple:
    """Join member batches into one tuple, one level deep."""
    out: list = []
    for b in batches:
        if isinstance(b, (tuple, list)):
            out.extend(b)
        else:
            out.append(b)
    return tuple(out)


def prepare(batches: Sequence[Any], trim: bool, flatten: bool) -> tuple:
    """Trim member batches to a common length (if asked) and flatten (if asked)."""
    if trim and len(batches) > 1:
        lengths = [batch_length(b) for b in batches]
        lo = min(lengths)
        if lo != max(lengths):
            batches = [trim_batch(b, lo) for b in batches]
    if flatten:
        return flatten_batches(batches)
    return tuple(batches)
