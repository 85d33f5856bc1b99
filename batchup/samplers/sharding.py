"""Rank sharding for data-parallel training: each rank takes a disjoint part of every epoch.

All ranks derive the same global order for epoch ``e`` from ``(seed, e)``
(or keep the natural order), so they agree without talking to each other.
The global order is first made a multiple of ``num_shards`` — by wrapping
around to its start (``remainder="pad"``, like PyTorch's
``DistributedSampler``) or by dropping its tail (``remainder="drop"``) —
and then split either strided (rank ``r`` takes positions ``r, r + W, ...``)
or contiguously (rank ``r`` takes the ``r``-th block). Every rank therefore
gets the same number of samples per epoch, hence the same number of batches
of the same sizes, which collective operations (JAX, ``torch.distributed``)
require.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from batchup._checks import is_int

__all__ = ["ShardSpec", "as_shard"]


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    """Which part of each epoch one rank takes.

    Parameters
    ----------
    rank : int
        This rank, ``0 <= rank < num_shards``.
    num_shards : int
        The number of ranks (the world size), at least 1.
    remainder : {"pad", "drop"}, default "pad"
        ``"pad"`` repeats samples from the start of the epoch's global order
        so every sample is used (at most one duplicate per rank and epoch with
        the strided split); ``"drop"`` leaves out the last ``n % num_shards``
        samples of the global order.
    split : {"strided", "contiguous"}, default "strided"
        How the padded global order is dealt out.

    Examples
    --------
    >>> spec = ShardSpec(1, 3)
    >>> spec.select(np.arange(10)).tolist()
    [1, 4, 7, 0]
    >>> spec.padding(10).tolist()
    [False, False, False, True]
    >>> ShardSpec(1, 3, remainder="drop").select(np.arange(10)).tolist()
    [1, 4, 7]
    """

    rank: int
    num_shards: int
    remainder: str = "pad"
    split: str = "strided"

    def __post_init__(self) -> None:
        if not is_int(self.num_shards) or self.num_shards < 1:
            raise ValueError(f"num_shards (the world size) must be an int >= 1, got {self.num_shards!r}")
        if not is_int(self.rank) or not 0 <= self.rank < self.num_shards:
            raise ValueError(
                f"rank must be an int in [0, num_shards={self.num_shards}), got {self.rank!r}"
            )
        if self.remainder not in ("pad", "drop"):
            raise ValueError(f"remainder must be 'pad' or 'drop', got {self.remainder!r}")
        if self.split not in ("strided", "contiguous"):
            raise ValueError(f"split must be 'strided' or 'contiguous', got {self.split!r}")

    def per_rank(self, n: int) -> int:
        """Return how many of ``n`` samples per epoch each rank gets.

        Parameters
        ----------
        n : int
            Samples (or items) in the epoch's global order.

        Returns
        -------
        int
            ``ceil(n / num_shards)`` with ``"pad"``, ``n // num_shards`` with
            ``"drop"``; the same for every rank.
        """
        if self.remainder == "pad":
            return -(-n // self.num_shards)
        return n // self.num_shards

    def positions(self, n: int) -> np.ndarray:
        """Return the positions in the padded global order that this rank takes.

        Parameters
        ----------
        n : int
            Samples (or items) in the epoch's global order.

        Returns
        -------
        numpy.ndarray
            ``per_rank(n)`` int64 positions; those ``>= n`` wrap around to the
            start of the order (padding).
        """
        m = self.per_rank(n)
        if self.split == "strided":
            return self.rank + self.num_shards * np.arange(m, dtype=np.int64)
        return self.rank * m + np.arange(m, dtype=np.int64)

    def select(self, order: np.ndarray) -> np.ndarray:
        """Return this rank's part of one epoch's global ``order``.

        Parameters
        ----------
        order : numpy.ndarray
            The epoch's global order (sample indices, or rows of them).

        Returns
        -------
        numpy.ndarray
            ``per_rank(len(order))`` entries of ``order``.
        """
        n = len(order)
        if n == 0:
            return order[:0]
        return order[self.positions(n) % n]

    def padding(self, n: int) -> np.ndarray:
        """Return a mask over this rank's samples: True where a sample is a wrap-around duplicate.

        Parameters
        ----------
        n : int
            Samples (or items) in the epoch's global order.

        Returns
        -------
        numpy.ndarray of bool
            ``per_rank(n)`` flags, aligned with :meth:`select`.
        """
        return self.positions(n) >= n

    def to_json(self) -> list:
        """Return the spec as a JSON list, the form checkpoints store.

        Returns
        -------
        list
            ``[rank, num_shards, remainder, split]``; ``ShardSpec(*that)``
            rebuilds the spec.
        """
        return [self.rank, self.num_shards, self.remainder, self.split]


def as_shard(shard: Any) -> ShardSpec | None:
    """Accept ``None``, a ``ShardSpec`` or a ``(rank, num_shards)`` pair.

    Parameters
    ----------
    shard : None, ShardSpec or (int, int)
        The ``shard`` option as a user passes it.

    Returns
    -------
    ShardSpec or None
        The spec (a pair becomes ``ShardSpec(rank, num_shards)``), or ``None``.

    Raises
    ------
    TypeError
        For anything else.
    """
    if shard is None or isinstance(shard, ShardSpec):
        return shard
    if isinstance(shard, (tuple, list)) and len(shard) == 2:
        return ShardSpec(shard[0], shard[1])
    raise TypeError(f"shard must be None, a (rank, num_shards) pair or a ShardSpec, got {shard!r}")
