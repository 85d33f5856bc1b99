"""Sample every index ``0 .. length-1`` once per epoch, in order or shuffled."""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup import _rng
from batchup._checks import is_int, repeats_value
from batchup.samplers.base import AbstractSampler, IndexBatchIterator
from batchup.samplers.base import make_index_iterator as _make

__all__ = ["StandardSampler"]


class StandardSampler(AbstractSampler):
    """Draw all of ``range(length)``, ``repeats`` times, in order or shuffled.

    Parameters
    ----------
    length : int
        Number of samples.
    repeats : int, default 1
        Number of epochs; ``-1`` repeats forever.

    Raises
    ------
    ValueError
        If ``repeats`` is 0 or below -1, or ``length`` is negative.

    Notes
    -----
    With an int seed the order of epoch ``e`` depends only on ``(seed, e)``.
    With a ``RandomState`` the permutations are drawn from it exactly as
    BatchUp 0.2 does (``rng.permutation(length)`` once per epoch, lazily).

    Examples
    --------
    >>> sampler = StandardSampler(5, repeats=2)
    >>> [ix.tolist() for ix in sampler.in_order_indices_batch_iterator(4)]
    [[0, 1, 2, 3], [4, 0, 1, 2], [3, 4]]
    """

    def __init__(self, length: int, repeats: int = 1) -> None:
        if not is_int(length) or length < 0:
            raise ValueError(f"length must be a non-negative int, got {length!r}")
        self._repeats = repeats_value(repeats)
        self.length = int(length)
        self.repeats = repeats

    def num_indices_generated(self) -> Any:
        if self._repeats is None:
            return np.inf
        return self.length * self._repeats

    def in_order_indices_batch_iterator(
        self, batch_size: int, *, drop_last: bool = False, shard: Any = None
    ) -> IndexBatchIterator:
        return _make(self.length, batch_size, self._repeats, drop_last=drop_last, shard=shard)

    def shuffled_indices_batch_iterator(
        self, batch_size: int, shuffle_rng: Any, *, drop_last: bool = False, shard: Any = None
    ) -> IndexBatchIterator:
        rng = _rng.resolve_shuffle(shuffle_rng)
        return _make(self.length, batch_size, self._repeats, rng=rng, drop_last=drop_last, shard=shard)

    def __repr__(self) -> str:
        return f"StandardSampler(length={self.length}, repeats={self.repeats})"

