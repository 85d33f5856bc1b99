"""Sample a fixed subset of indices once per epoch, in order or shuffled."""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from batchup._checks import index_array, repeats_value
from batchup.samplers.base import PlannedSampler
from batchup.samplers.flat import FlatPlan
from batchup.samplers.plan import PlanOptions

__all__ = ["SubsetSampler"]


class SubsetSampler(PlannedSampler):
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
    ``rng.permutation(indices)``, as in BatchUp 0.2. A checkpoint records a
    digest of the subset, so it cannot be restored into another subset.

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
        self._base = self.indices.astype(np.int64)
        self._crc = zlib.crc32(np.ascontiguousarray(self._base).tobytes())

    def num_indices_generated(self) -> Any:
        if self._repeats is None:
            return np.inf
        return self.length * self._repeats

    def map_indices(self, indices: Any) -> Any:
        return self.indices[indices]

    def _draw(self, rng: Any) -> np.ndarray:
        if rng is None:
            return self._base
        # rng.permutation(indices) equals indices[rng.permutation(n)] draw for draw,
        # which is what BatchUp 0.2 draws for a subset.
        return self._base[rng.permutation(self.length)]

    def plan(
        self, batch_size: Any, shuffle: Any = None, *, drop_last: bool = False, shard: Any = None, epoch: int = 0
    ) -> FlatPlan:
        """Return the plan of one run (see :meth:`AbstractSampler.plan`).

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        shuffle : None, bool, int, SeedKey, RandomState or Generator
            ``None``/``False`` in order; an int seed (epoch ``e`` of the run is a permutation drawn from ``(seed, e)``); an RNG object to draw from (BatchUp 0.2's order).
        drop_last : bool, default False
            Keyword-only. Leave out a final short batch.
        shard : None, (rank, num_shards) or ShardSpec
            Keyword-only. This rank's part of every epoch.
        epoch : int, default 0
            Keyword-only. Which pass over the data (see
            :class:`~batchup.samplers.plan.PlanOptions`).

        Returns
        -------
        FlatPlan
            Every index of the subset once per epoch, ``repeats`` epochs.
        """
        options = PlanOptions.make(shuffle, drop_last, shard, epoch)
        return FlatPlan(
            self._draw, self.length, batch_size, self._repeats, options,
            identity={"sampler": "subset", "indices_crc": self._crc}, legacy_surplus=True,
        )

    def __repr__(self) -> str:
        return f"SubsetSampler(<{self.length} indices>, repeats={self.repeats})"
