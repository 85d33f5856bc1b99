"""CompositeDataSource: draw one batch from every member and combine them.

The typical use is semi-supervised learning: a small labelled source that
repeats forever beside a large unlabelled one that defines the epoch.
"""
from __future__ import annotations

from typing import Any, Mapping

from batchup._iterator import StatefulIterator, check_state
from batchup.sources._batches import prepare
from batchup.sources._members import check_members, member_kwargs
from batchup.sources.base import AbstractDataSource, _load_into, _state_of

__all__ = ["CompositeBatchIterator", "CompositeDataSource"]


class CompositeDataSource(AbstractDataSource):
    """Combine the batches of several sources, advanced together like ``zip``.

    Parameters
    ----------
    datasets : list of AbstractDataSource
        The members; composites may be nested to any depth.
    flatten : bool, default True
        Join the members' batch tuples into one tuple (one level deep);
        otherwise yield a tuple of the members' batches.
    trim : bool, default True
        Cut every member's batch to the shortest one's length.

    Notes
    -----
    Iteration stops as soon as any member is exhausted. Every member gets
    the same keyword arguments; an int ``shuffle`` seed is split into an
    independent seed per member, while a ``RandomState`` is shared and drawn
    from in member order, as in BatchUp 0.2.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> lab = ArrayDataSource([np.arange(3)], repeats=-1)
    >>> unlab = ArrayDataSource([np.arange(10, 15)])
    >>> ds = CompositeDataSource([lab, unlab])
    >>> [(a.tolist(), b.tolist()) for a, b in ds.batch_iterator(2)]
    [([0, 1], [10, 11]), ([2, 0], [12, 13]), ([1], [14])]
    """

    def __init__(self, datasets: list, flatten: bool = True, trim: bool = True) -> None:
        self.datasets = check_members("datasets", datasets)
        self.flatten = flatten
        self.trim = trim
        self._random_access = all(d.is_random_access for d in self.datasets)

    @property
    def is_random_access(self) -> bool:
        return self._random_access

    def num_samples(self, **kwargs: Any) -> Any:
        counts = [d.num_samples(**kw) for d, kw in zip(self.datasets, member_kwargs(kwargs, len(self.datasets)))]
        known = [c for c in counts if c is not None]
        return min(known) if known else None

    def batch_iterator(self, batch_size: int, **kwargs: Any) -> CompositeBatchIterator:
        its = [
            d.batch_iterator(batch_size, **kw)
            for d, kw in zip(self.datasets, member_kwargs(kwargs, len(self.datasets)))
        ]
        return CompositeBatchIterator(its, self.trim, self.flatten)

    def _require_random_access(self) -> None:
        if not self._random_access:
            raise TypeError("this CompositeDataSource has members that are not random access")

    def batch_indices_iterator(self, batch_size: int, **kwargs: Any) -> CompositeBatchIterator:
        """Zip the members' index iterators; always trims, never flattens."""
        self._require_random_access()
        its = [
            d.batch_indices_iterator(batch_size, **kw)
            for d, kw in zip(self.datasets, member_kwargs(kwargs, len(self.datasets)))
        ]
        return CompositeBatchIterator(its, True, False)

    def _by_indices(self, indices: Any, method: str) -> tuple:
        self._require_random_access()
        if len(indices) != len(self.datasets):
            raise ValueError(
                f"indices must hold one entry per member: got {len(indices)} entries for "
                f"{len(self.datasets)} members"
            )
        batches = [getattr(d, method)(ix) for d, ix in zip(self.datasets, indices)]
        return prepare(batches, self.trim, self.flatten)

    def samples_by_indices_nomapping(self, indices: Any) -> tuple:
        return self._by_indices(indices, "samples_by_indices_nomapping")

    def samples_by_indices(self, indices: Any) -> tuple:
        return self._by_indices(indices, "samples_by_indices")


class CompositeBatchIterator(StatefulIterator):
    """Advance member iterators together; stop when any member stops."""

    KIND = "composite"

    def __init__(self, members: list, trim: bool, flatten: bool) -> None:
        self._members = members
        self._trim = trim
        self._flatten = flatten
        self._done = False

    def __next__(self) -> tuple:
        if self._done:
            raise StopIteration
        batches = []
        for it in self._members:
            try:
                batches.append(next(it))
            except StopIteration:
                self._done = True
                raise
        return prepare(batches, self._trim, self._flatten)

    def remaining(self) -> Any:
        lefts = [getattr(m, "remaining", lambda: None)() for m in self._members]
        known = [x for x in lefts if x is not None]
        return min(known) if known else None

    def __len__(self) -> int:
        left = self.remaining()
        if left is None:
            raise TypeError("this batch iterator is endless or of unknown length")
        return left

    def state_dict(self) -> dict:
        return {"kind": self.KIND, "done": self._done, "members": [_state_of(m) for m in self._members]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, {"kind": self.KIND}, type(self).__name__)
        members = state["members"]
        if len(members) != len(self._members):
            raise ValueError(
                f"CompositeBatchIterator: the state has {len(members)} members but this "
                f"iterator has {len(self._members)}"
            )
        for it, s in zip(self._members, members):
            _load_into(it, s)
        self._done = bool(state["done"])
