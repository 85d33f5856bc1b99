"""Choosing length buckets: which samples share batches, and how many fit in one.

A bucket is a range of sample lengths ``(edge[k-1], edge[k]]``. Its batches
are padded to its *padded length* ``P_k`` (the longest sample in it, rounded
up to ``pad_to_multiple_of``) and hold ``B_k`` samples: ``batch_size``, or
``max_tokens // P_k`` with a token budget, or the smaller of the two.

Automatic boundaries come from :func:`optimal_edges`, a dynamic programme
over the distinct lengths that minimises the *padded size* of the buckets:
``sum_k ceil(n_k / B_k) * B_k * P_k``, the tokens of every batch padded to
its bucket's length, counting each bucket's short last batch as a full one.
The first term is padding waste, the rounding up is the room a bucket's
last batch leaves empty, so a small data set gets few buckets (every bucket
adds a short batch) and a large one gets many narrow ones. At most
``num_buckets`` buckets are used; among equal costs, the fewest.

The checks of :class:`~batchup.samplers.BucketSampler`'s lengths and
boundaries, and the seed drawn from an RNG object, live here too.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from batchup import _rng

__all__ = ["MAX_CANDIDATES", "assign", "check_boundaries", "check_lengths", "optimal_edges", "round_up",
           "seed_from_rng"]

#: The most distinct edge candidates the dynamic programme looks at (its cost is
#: ``num_buckets * MAX_CANDIDATES**2``); with more distinct lengths, candidates are
#: length quantiles, so a sample is padded at most to the next quantile.
MAX_CANDIDATES = 512


def round_up(lengths: np.ndarray, multiple: int | None) -> np.ndarray:
    """Return ``lengths`` rounded up to a multiple of ``multiple`` (unchanged for ``None``)."""
    if multiple is None or multiple == 1:
        return lengths
    return -(-lengths // multiple) * multiple


def assign(lengths: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Return the bucket of every length: ``k`` such that ``edges[k-1] < length <= edges[k]``.

    Lengths above the last edge get bucket ``len(edges)``.

    Examples
    --------
    >>> assign(np.array([1, 8, 9, 16, 40]), np.array([8, 16])).tolist()
    [0, 0, 1, 1, 2]
    """
    return np.searchsorted(edges, lengths, side="left").astype(np.int64)


def optimal_edges(rounded: np.ndarray, num_buckets: int, batch_size_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Return the upper edges (at most ``num_buckets``) that minimise the buckets' padded size.

    Parameters
    ----------
    rounded : 1-D int array
        The samples' lengths, already rounded up to ``pad_to_multiple_of``.
    num_buckets : int
        The most buckets to use.
    batch_size_of : callable
        Maps an array of padded lengths to the batch sizes of buckets padded to them.

    Returns
    -------
    ndarray of int64
        Increasing edges; the last is ``rounded.max()``. Every edge is one of
        the lengths, so it is also the padded length of its bucket.

    Examples
    --------
    >>> lengths = np.array([2, 2, 2, 2, 3, 3, 9, 10])
    >>> optimal_edges(lengths, 4, lambda p: 20 // p).tolist()   # a budget of 20 tokens
    [3, 10]
    >>> optimal_edges(lengths, 1, lambda p: 20 // p).tolist()
    [10]
    """
    if len(rounded) == 0:
        return np.zeros(0, np.int64)
    vals, counts = np.unique(rounded, return_counts=True)
    if len(vals) > MAX_CANDIDATES:
        vals = np.unique(np.quantile(rounded, np.linspace(0.0, 1.0, MAX_CANDIDATES), method="higher"))
        counts = np.bincount(np.searchsorted(vals, rounded, side="left"), minlength=len(vals))
    vals = vals.astype(np.int64)
    d = len(vals)
    sizes = np.asarray(batch_size_of(vals), dtype=np.int64)
    cum = np.concatenate([[0], np.cumsum(counts)])
    # cost[i, j]: one bucket holding candidates i..j, padded to vals[j] (inf where i > j).
    members = cum[1:][None, :] - cum[:-1][:, None]
    batches = -(-members // sizes[None, :])
    with np.errstate(invalid="ignore"):
        cost = np.where(members > 0, (batches * sizes[None, :] * vals[None, :]).astype(np.float64), np.inf)
    best = np.full(d + 1, np.inf)
    best[0] = 0.0  # best[j]: the least cost of candidates 0..j-1 in exactly t buckets
    back = []
    top, top_t = np.inf, 0
    columns = np.arange(d)
    for t in range(min(num_buckets, d)):
        total = best[:-1, None] + cost
        start = np.argmin(total, axis=0)
        best = np.concatenate([[np.inf], total[start, columns]])
        back.append(start)
        if best[d] < top:
            top, top_t = best[d], t
    edges = []
    j = d - 1
    for t in range(top_t, -1, -1):
        edges.append(int(vals[j]))
        j = int(back[t][j]) - 1
    return np.array(edges[::-1], dtype=np.int64)


def check_lengths(lengths: Any) -> np.ndarray:
    """Return the sample lengths as int64 (a RaggedArray stands for its lengths); every one must be >= 1."""
    ragged = getattr(lengths, "lengths", None)
    if ragged is not None and hasattr(lengths, "offsets"):
        lengths = ragged
    arr = np.asarray(lengths)
    if arr.ndim != 1:
        raise ValueError(f"lengths must be a 1-D array of sample lengths, got an array of shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = arr < 1
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"lengths[{i}] is {int(arr[i])}, but every sample needs a length >= 1 "
            "(leave empty samples out of the source)"
        )
    return arr


def check_boundaries(boundaries: Any) -> np.ndarray:
    """Return non-empty, positive, strictly increasing int64 bucket edges (or raise naming the offender)."""
    arr = np.asarray(boundaries)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"boundaries must be a non-empty 1-D list of increasing lengths (or None to choose them), got {boundaries!r}"
        )
    if arr.dtype.kind not in "iu":
        raise TypeError(f"boundaries must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr[0] < 1:
        raise ValueError(f"boundaries must be positive, got boundaries[0]={int(arr[0])}")
    steps = np.diff(arr) <= 0
    if steps.any():
        i = int(np.argmax(steps)) + 1
        raise ValueError(
            f"boundaries must be strictly increasing, but boundaries[{i}]={int(arr[i])} follows "
            f"boundaries[{i - 1}]={int(arr[i - 1])}"
        )
    return arr


def seed_from_rng(rng: Any) -> _rng.SeedKey:
    """Draw one int seed from an RNG object (``np.random`` for ``shuffle=True``)."""
    rng = _rng.legacy(rng)
    if isinstance(rng, np.random.Generator):
        seed = int(rng.integers(0, _rng.SEED_MAX, endpoint=True))
    elif isinstance(rng, np.random.RandomState):
        seed = int(rng.randint(0, _rng.SEED_MAX, dtype=np.int64))
    else:
        raise TypeError(
            f"BucketSampler shuffles from an int seed; it can draw one from a np.random.RandomState or "
            f"Generator, but not from {rng!r}; pass shuffle=<int>"
        )
    return _rng.SeedKey(seed, (), True)
