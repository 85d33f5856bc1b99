"""ChoiceDataSource: each batch comes whole from one member source.

Suits per-domain batches: every batch holds samples of a single member, and
the members take turns (cyclically, in a shuffled order per round, or on a
stratified schedule that spreads every member's batches evenly).
"""
from __future__ import annotations

import collections
from typing import Any, Mapping

import numpy as np

from batchup import _rng
from batchup._iterator import StatefulIterator, check_state
from batchup.samplers import num_batches
from batchup.sources._members import check_members, member_kwargs
from batchup.sources.base import AbstractDataSource, _load_into, _state_of

__all__ = ["ChoiceBatch", "ChoiceBatchIterator", "ChoiceDataSource", "stratified_schedule"]

ChoiceBatch = collections.namedtuple("ChoiceBatch", ["sample_indices", "ds_index"])
ChoiceBatch.__doc__ = "Index batch of a ChoiceDataSource: ``sample_indices`` drawn from member ``ds_index``."


def stratified_schedule(counts: Any) -> np.ndarray:
    """Return member numbers, member ``i`` appearing ``counts[i]`` times, evenly spread.

    Examples
    --------
    >>> stratified_schedule([2, 4]).tolist()
    [0, 1, 1, 0, 1, 1]
    """
    b = np.asarray(counts, dtype=float)
    if b.size == 0 or b.max() == 0:
        return np.zeros(0, dtype=int)
    m = int(b.max())
    eps = 0.25 / m
    delta = b / m
    value = np.zeros_like(b)
    prev = np.full(b.shape, -1.0)
    out = []
    for _ in range(m):
        v = np.floor(value + eps)
        out.extend(np.flatnonzero(v > prev).tolist())
        prev = v
        value = value + delta
    return np.array(out, dtype=int)


class ChoiceDataSource(AbstractDataSource):
    """Yield each batch from one member, choosing the member per step.

    Parameters
    ----------
    datasets : list of AbstractDataSource
        The members (at least one).
    stratified : bool, default False
        When every member's size is finite, follow a schedule that uses each
        member's whole epoch, spread evenly (shuffled when ``shuffle`` is
        set). Otherwise members take turns and iteration ends as soon as any
        member is exhausted.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> a = ArrayDataSource([np.arange(4)])
    >>> b = ArrayDataSource([np.arange(100, 104)])
    >>> [x.tolist() for (x,) in ChoiceDataSource([a, b]).batch_iterator(2)]
    [[0, 1], [100, 101], [2, 3], [102, 103]]
    """

    def __init__(self, datasets: list, stratified: bool = False) -> None:
        self.datasets = check_members("datasets", datasets)
        if not self.datasets:
            raise ValueError("datasets must contain at least one data source")
        self.stratified = stratified
        self._random_access = all(d.is_random_access for d in self.datasets)

    @property
    def is_random_access(self) -> bool:
        return self._random_access

    def num_samples(self, **kwargs: Any) -> Any:
        total: Any = 0
        for d, kw in zip(self.datasets, member_kwargs(kwargs, len(self.datasets))):
            n = d.num_samples(**kw)
            if n is not None:
                total = total + n
        return total

    def _iterator(self, batch_size: int, shuffle: Any, kwargs: dict, indices: bool) -> ChoiceBatchIterator:
        rng = _rng.resolve_shuffle(shuffle)
        k = len(self.datasets)
        per_member = member_kwargs(dict(kwargs, shuffle=shuffle), k)
        if indices:
            its = [d.batch_indices_iterator(batch_size, **kw) for d, kw in zip(self.datasets, per_member)]
        else:
            its = [d.batch_iterator(batch_size, **kw) for d, kw in zip(self.datasets, per_member)]
        counts = None
        if self.stratified:
            ns = [d.num_samples(**dict(kw, shuffle=_rng.resolve_shuffle(kw.get("shuffle"))))
                  for d, kw in zip(self.datasets, per_member)]
            if all(n is not None and n != np.inf for n in ns):
                counts = [num_batches(int(n), batch_size) for n in ns]
        own_rng = rng.child(k) if isinstance(rng, _rng.SeedKey) else rng
        return ChoiceBatchIterator(its, own_rng, counts, wrap=indices)

    def batch_iterator(self, batch_size: int, shuffle: Any = None, **kwargs: Any) -> ChoiceBatchIterator:
        return self._iterator(batch_size, shuffle, kwargs, indices=False)

    def _require_random_access(self) -> None:
        if not self._random_access:
            raise TypeError("this ChoiceDataSource has members that are not random access")

    def batch_indices_iterator(self, batch_size: int, shuffle: Any = None, **kwargs: Any) -> ChoiceBatchIterator:
        """Yield ``ChoiceBatch(sample_indices, ds_index)`` for every batch."""
        self._require_random_access()
        return self._iterator(batch_size, shuffle, kwargs, indices=True)

    def _by_indices(self, cb: Any, method: str) -> Any:
        self._require_random_access()
        if not isinstance(cb, ChoiceBatch):
            raise TypeError(f"indices must be a ChoiceBatch, got {type(cb).__name__}")
        return getattr(self.datasets[cb.ds_index], method)(cb.sample_indices)

    def samples_by_indices_nomapping(self, indices: Any) -> Any:
        return self._by_indices(indices, "samples_by_indices_nomapping")

    def samples_by_indices(self, indices: Any) -> Any:
        return self._by_indices(indices, "samples_by_indices")


class ChoiceBatchIterator(StatefulIterator):
    """Take the next batch from the member chosen for each step.

    Non-stratified: round ``r`` visits the members in order, or in the order
    ``rng.permutation(k)`` drawn at the start of the round. Stratified: a
    schedule computed once (shuffled with ``rng.shuffle`` at the first step).
    """

    KIND = "choice"

    def __init__(self, members: list, rng: Any, counts: Any, wrap: bool) -> None:
        self._members = members
        self._rng = rng
        self._counts = counts
        self._wrap = wrap
        self._step = 0
        self._done = False
        self._order: Any = None  # schedule, or the current round's order
        self._rng_mark: Any = None

    def _make_order(self) -> None:
        k = len(self._members)
        rng = self._rng
        if self._counts is not None:
            sched = np.repeat(np.arange(k), self._counts) if rng is not None else stratified_schedule(self._counts)
            if rng is not None:
                sched = sched.astype(int)
                if isinstance(rng, _rng.SeedKey):
                    rng.generator(0).shuffle(sched)
                else:
                    self._rng_mark = _rng.capture_rng_state(rng)
                    rng.shuffle(sched)
            self._order = sched
        elif rng is None:
            self._order = np.arange(k)
        elif isinstance(rng, _rng.SeedKey):
            self._order = rng.generator(self._step // k).permutation(k)
        else:
            self._rng_mark = _rng.capture_rng_state(rng)
            self._order = rng.permutation(k)

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        k = len(self._members)
        if self._counts is not None:
            if self._order is None:
                self._make_order()
            if self._step >= len(self._order):
                self._done = True
                raise StopIteration
            i = int(self._order[self._step])
        else:
            if self._step % k == 0 or self._order is None:
                self._make_order()
            i = int(self._order[self._step % k])
        try:
            batch = next(self._members[i])
        except StopIteration:
            self._done = True
            if self._counts is not None:
                raise ValueError(
                    f"member {i} of the ChoiceDataSource ran out of batches before its "
                    "num_samples() said it would"
                ) from None
            raise
        self._step += 1
        return ChoiceBatch(batch, i) if self._wrap else batch

    def state_dict(self) -> dict:
        state = {
            "kind": self.KIND,
            "step": self._step,
            "done": self._done,
            "members": [_state_of(m) for m in self._members],
        }
        if self._rng is not None and not isinstance(self._rng, _rng.SeedKey):
            state["rng_mark"] = self._rng_mark
            state["rng_now"] = _rng.get_rng_state(self._rng)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, {"kind": self.KIND}, type(self).__name__)
        if len(state["members"]) != len(self._members):
            raise ValueError(
                f"ChoiceBatchIterator: the state has {len(state['members'])} members but this "
                f"iterator has {len(self._members)}"
            )
        for it, s in zip(self._members, state["members"]):
            _load_into(it, s)
        self._step = int(state["step"])
        self._done = bool(state["done"])
        self._order = None
        k = len(self._members)
        needs_order = self._step > 0 and (self._counts is not None or self._step % k != 0)
        legacy = self._rng is not None and not isinstance(self._rng, _rng.SeedKey)
        if needs_order:
            saved_step = self._step
            if self._counts is None:
                self._step = (saved_step // k) * k
            if legacy:
                _rng.set_rng_state(self._rng, state["rng_mark"])
            self._make_order()
            self._step = saved_step
        if legacy:
            self._rng_mark = state.get("rng_mark")
            _rng.set_rng_state(self._rng, state["rng_now"])
