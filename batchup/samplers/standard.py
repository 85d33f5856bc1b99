"""Sample every index ``0 .. length-1`` once per epoch, in order or shuffled."""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup._checks import is_int, repeats_value
from batchup.samplers.base import PlannedSampler
from batchup.samplers.flat import FlatPlan
from batchup.samplers.plan import PlanOptions

__all__ = ["StandardSampler"]


class StandardSampler(PlannedSampler):
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
    >>> plan = sampler.plan(4, shuffle=0)
    >>> len(plan), plan.indices(1).shape
    (3, (4,))
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

    def _draw(self, rng: Any) -> np.ndarray:
        if rng is None:
            return np.arange(self.length, dtype=np.int64)
        return rng.permutation(self.length)

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
            Every index ``0 .. length-1`` once per epoch, ``repeats`` epochs;
            random access (``plan.indices(b)``) in order or with an int seed.
        """
        options = PlanOptions.make(shuffle, drop_last, shard, epoch)
        return FlatPlan(
            self._draw, self.length, batch_size, self._repeats, options,
            identity={"sampler": "standard"}, legacy_surplus=True,
        )

    def __repr__(self) -> str:
        return f"StandardSampler(length={self.length}, repeats={self.repeats})"
