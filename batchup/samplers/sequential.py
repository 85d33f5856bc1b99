"""IteratorPlan: the plan of a sampler that only implements BatchUp 0.2's iterator methods.

A user's own sampler written for BatchUp 0.2 implements
``in_order_indices_batch_iterator(batch_size)`` and
``shuffled_indices_batch_iterator(batch_size, rng)``. It keeps working: its
plan walks those iterators in order. With an int seed the sampler receives a
``np.random.Generator`` derived from ``(seed, epoch)``. Such a plan is not
random access and cannot be sharded (implement ``plan`` for that, see the
guide page "How batches are planned"); its checkpoint is the iterator's own
state when it has ``state_dict``, otherwise the number of batches consumed,
replayed on restore.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchup import _rng
from batchup._checks import positive_int
from batchup._iterator import StatefulIterator, check_state
from batchup.samplers.plan import BatchPlan, PlanOptions

__all__ = ["IteratorPlan"]


class IteratorPlan(BatchPlan):
    """Walk a sampler's own index iterator; see the module docstring.

    Parameters
    ----------
    sampler : AbstractSampler
        A sampler with BatchUp 0.2's ``in_order_indices_batch_iterator`` and
        ``shuffled_indices_batch_iterator`` (and ``num_indices_generated``).
    batch_size : int
        Samples per batch.
    options : PlanOptions
        The validated options; ``shard`` may only be a single rank.

    Raises
    ------
    ValueError
        For ``shard`` with more than one rank.
    """

    KIND = "sequential"

    def __init__(self, sampler: Any, batch_size: int, options: PlanOptions) -> None:
        bs = positive_int("batch_size", batch_size)
        if options.shard is not None and options.shard.num_shards > 1:
            raise ValueError(
                f"{type(sampler).__name__} implements only BatchUp 0.2's iterator methods, so its batches "
                "cannot be split between ranks; implement plan() (see 'How batches are planned') to shard it"
            )
        self.sampler = sampler
        n = sampler.num_indices_generated()
        if n is None or n == np.inf:
            count = None
        else:
            count = int(n) // bs if options.drop_last else -(-int(n) // bs)
        if n is None and options.epoch:
            # Unknown length: batch numbers cannot be offset by whole passes.
            options = PlanOptions(options.shuffle, options.drop_last, options.shard, 0)
        self._setup(options, bs, count, n)
        self.random_access = False

    def make_inner(self) -> Any:
        """Return a fresh iterator of the sampler's index batches for this plan.

        Returns
        -------
        iterator of numpy.ndarray
            ``sampler.in_order_indices_batch_iterator(batch_size)`` in order,
            else ``sampler.shuffled_indices_batch_iterator(batch_size, rng)``
            with the RNG object, or a ``Generator`` derived from
            ``(seed, epoch)`` for an int seed.
        """
        key = self.options.shuffle
        bs = self.batch_size
        if key is None:
            return iter(self.sampler.in_order_indices_batch_iterator(bs))
        rng = key.generator(self.options.epoch) if isinstance(key, _rng.SeedKey) else key
        return iter(self.sampler.shuffled_indices_batch_iterator(bs, rng))

    def _identity(self) -> dict:
        return {"sampler": type(self.sampler).__qualname__}

    def iterator(self) -> Any:
        return SequentialIndexIterator(self)


class SequentialIndexIterator(StatefulIterator):
    """Walk an :class:`IteratorPlan`; drops a short last batch when asked."""

    KIND = "index"

    def __init__(self, plan: IteratorPlan) -> None:
        self.plan = plan
        self.position = 0
        self.last_padding = None
        self._inner = plan.make_inner()
        self._done = False

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            batch = next(self._inner)
        except StopIteration:
            self._done = True
            raise
        bs = self.plan.batch_size
        if self.plan.options.drop_last and bs is not None and len(batch) < bs:
            self._done = True
            raise StopIteration
        self.position += 1
        return batch

    def remaining(self) -> int | None:
        n = self.plan.num_batches
        return 0 if self._done else None if n is None else n - self.position

    def state_dict(self) -> dict:
        fn = getattr(self._inner, "state_dict", None)
        return {
            "kind": self.KIND, "plan": self.plan.fingerprint(), "position": self.position,
            "inner": fn() if fn is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        where = type(self).__name__
        check_state(state, {"kind": self.KIND, "plan": self.plan.fingerprint()}, where)
        if "position" not in state:
            raise ValueError(f"{where}: malformed state, the field 'position' is missing")
        position = self.plan.check_position(state["position"])
        self._inner = self.plan.make_inner()
        self._done = False
        inner = state.get("inner")
        if inner is not None and hasattr(self._inner, "load_state_dict"):
            self._inner.load_state_dict(inner)
        else:
            for i in range(position):
                try:
                    next(self._inner)
                except StopIteration:
                    raise ValueError(
                        f"{where}: the state does not fit this plan: the sampler's iterator ended after "
                        f"{i} batches, before the {position} recorded in the state"
                    ) from None
        self.position = position
