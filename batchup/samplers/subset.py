"""Sample a fixed subset of indices once per epoch, in order or shuffled."""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup import _rng
from batchup._checks import index_array, repeats_value
from batchup.samplers.base import AbstractSampler, IndexBatchIterator
from batchup.samplers.base import make_index_iterator as _make

__all__ = ["SubsetSampler"]


class SubsetSampler(AbstractSampler):
    """Draw the indices in ``indices``, ``repeats`` times, in order or shuffled.

    Parameters
    ----------
    indices : 1-D array-like of int
        The absolute indices of the subset; duplicates are drawn as often as
        they appear.
    repeats : int, default 1
        Number of epochs; ``-1`` repeats forever.

    Notes
    -----
    Yielded index batches are fresh arrays: modifying one never changes the
    sampler. A shuffled epoch with a ``RandomState`` is
    ``rng.permutation(indices)``, as in BatchUp 0.2.

    Examples
    --------
    >>> sampler = SubsetSampler([7, 3, 5])
    >>> [ix.tolist() for ix in sampler.in_order_indices_batch_iterator(2)]
    [[7, 3], [5]]
    >>> sampler.map_indices([0, 2]).tolist()
    [7, 5]
    """

    def __init__(self, indices: Any, repeats: int = 1) -> None:
        self._repeats = repeats_value(repeats)
        self.indices = index_array("indices", indices)
        self.length = len(self.indices)
        self.repeats = repeats

    def num_indices_generated(self) -> Any:
        if self._repeats is None:
            return np.inf
        return self.length * self._repeats

    def map_indices(self, indices: Any) -> Any:
        return self.indices[indices]

    def in_order_indices_batch_iterator(
        self, batch_size: int, *, drop_last: bool = False, shard: Any = None
    ) -> IndexBatchIterator:
        return _make(
            self.length, batch_size, self._repeats, base=self.indices.astype(np.int64), drop_last=drop_last, shard=shard
        )

    def shuffled_indices_batch_iterator(
        self, batch_size: int, shuffle_rng: Any, *, drop_last: bool = False, shard: Any = None
    ) -> IndexBatchIterator:
        rng = _rng.resolve_shuffle(shuffle_rng)
        return _make(
            self.length, batch_size, self._repeats, base=self.indices, rng=rng, drop_last=drop_last, shard=shard
        )

    def __repr__(self) -> str:
        return f"SubsetSampler(<{self.length} indices>, repeats={self.repeats})"

