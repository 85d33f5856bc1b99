"""The arithmetic and the row shuffling behind :class:`~batchup.sources.MixtureDataSource`.

Counts per epoch (:func:`apportion`), the in-order interleave
(:func:`smooth_order`), member index batches as *trees* (a 1-D int array,
or a tuple of trees for composites) and mixed batches (tuples or lists of
arrays, written row by row into the drawn order).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "apportion", "check_tree", "concat", "describe", "interleave", "length", "prepend", "put", "signature",
    "smooth_order", "take",
]


def apportion(weights: Any, total: int) -> np.ndarray:
    """Return ``total`` split into integer counts in proportion to ``weights`` (largest remainders).

    Each count is within 1 of ``total * w / sum(w)``; a zero weight gets 0;
    remainders that tie go to the lower index.

    Parameters
    ----------
    weights : 1-D array-like of float
        Non-negative weights, at least one of them positive (not checked
        here: :class:`~batchup.sources.MixtureDataSource` validates its
        ``weights``); only their ratios matter.
    total : int
        The number to split, ``>= 0`` (a mixture's ``epoch_size``).

    Returns
    -------
    ndarray of int64, shape (len(weights),)
        The counts, which sum to ``total``: each is ``floor(total * w / sum(w))``
        plus one for the members with the largest fractional parts.

    Examples
    --------
    >>> apportion([0.7, 0.2, 0.1], 12).tolist()
    [9, 2, 1]
    >>> apportion([1, 1, 1], 4).tolist()
    [2, 1, 1]
    """
    w = np.asarray(weights, dtype=float)
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(np.int64)
    short = int(total) - int(counts.sum())
    if short > 0:
        # Rounded, so that remainders equal but for float noise tie (and go to the lower index).
        rem = np.where(w > 0, np.round(exact - counts, 9), -1.0)
        order = np.lexsort((np.arange(len(w)), -rem))
        counts[order[:short]] += 1
    return counts


# -- index trees: a member's index batch is a 1-D int array or a (nested) tuple of them -------

def check_tree(tree: Any, where: str) -> Any:
    if isinstance(tree, np.ndarray) and tree.ndim == 1:
        return tree
    if type(tree) in (tuple, list):
        return tuple(check_tree(t, where) for t in tree)
    raise TypeError(
        f"{where} hands out index batches of type {type(tree).__name__}; a mixture takes single samples, "
        "so its members must be planned by index arrays (array, subset, map and composite sources)"
    )


def take(tree: Any, rows: np.ndarray) -> Any:
    if isinstance(tree, tuple):
        return tuple(take(t, rows) for t in tree)
    return tree[rows]


def concat(trees: list) -> Any:
    if isinstance(trees[0], tuple):
        return tuple(concat([t[j] for t in trees]) for j in range(len(trees[0])))
    return np.concatenate(trees)


def length(tree: Any) -> int:
    while isinstance(tree, tuple):
        tree = tree[0]
    return len(tree)


def put(out: Any, tree: Any, mask: np.ndarray) -> Any:
    """Write ``tree`` into the rows ``mask`` of ``out`` (allocated from ``tree`` when ``out`` is None)."""
    if isinstance(tree, tuple):
        out = (None,) * len(tree) if out is None else out
        return tuple(put(o, t, mask) for o, t in zip(out, tree))
    if out is None:
        out = np.empty(len(mask), dtype=tree.dtype)
    out[mask] = tree
    return out


# -- batches: tuples (or lists) of arrays, mixed row by row ----------------------------------

def signature(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)):
        return (type(batch).__name__, tuple(signature(b) for b in batch))
    if isinstance(batch, np.ndarray) and batch.ndim >= 1:
        return (batch.dtype.str, batch.shape[1:])
    return ("not an array", type(batch).__name__)


def describe(sig: Any) -> str:
    if isinstance(sig[1], tuple) and sig[0] in ("tuple", "list"):
        inner = ", ".join(describe(s) for s in sig[1])
        return f"({inner})" if sig[0] == "tuple" else f"[{inner}]"
    if sig[0] == "not an array":
        return f"<{sig[1]}, not an array>"
    return f"{np.dtype(sig[0]).name}{list(sig[1])}"


def _rebuild(template: Any, children: list) -> Any:
    if hasattr(template, "_fields"):
        return type(template)(*children)
    return type(template)(children)


def interleave(template: Any, parts: dict, rows: dict, n: int) -> Any:
    """Return one batch of ``n`` rows: member ``i``'s batch ``parts[i]`` goes to the rows ``rows[i]``."""
    if isinstance(template, (tuple, list)):
        children = [interleave(template[j], {i: p[j] for i, p in parts.items()}, rows, n)
                    for j in range(len(template))]
        return _rebuild(template, children)
    out = np.empty((n,) + template.shape[1:], dtype=template.dtype)
    for i, p in parts.items():
        out[rows[i]] = p
    return out


def prepend(batch: Any, column: np.ndarray) -> Any:
    if isinstance(batch, list):
        return [column, *batch]
    if isinstance(batch, tuple) and not hasattr(batch, "_fields"):
        return (column, *batch)
    return (column, batch)


def smooth_order(counts: np.ndarray) -> np.ndarray:
    """Return the slots in a smooth interleave: member ``i``'s ``j``-th sample at time ``(j + 1/2) / counts[i]``."""
    k = len(counts)
    member = np.repeat(np.arange(k), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    j = np.arange(len(member)) - starts[member]
    time = (2 * j + 1) / (2.0 * counts[member])
    return np.lexsort((member, time)).astype(np.int64)
