"""ChoiceDataSource: each batch comes whole from one member source.

Suits per-domain batches: every batch holds samples of a single member, and
the members take turns (cyclically, in a shuffled order per round, or on a
stratified schedule that spreads every member's batches evenly). For
random-access members the schedule is part of the :class:`ChoicePlan`, so
step ``s`` names its member and that member's batch directly.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping

import numpy as np

from batchup import _rng
from batchup._iterator import StatefulIterator, check_state
from batchup.samplers import num_batches
from batchup.samplers.plan import BatchPlan, PlanOptions, plan_options
from batchup.sources._members import check_flag, check_members, member_kwargs, member_plans
from batchup.sources.base import AbstractDataSource, BatchIterator

__all__ = ["ChoiceBatch", "ChoiceBatchIterator", "ChoiceDataSource", "ChoicePlan", "stratified_schedule"]

ChoiceBatch = collections.namedtuple("ChoiceBatch", ["sample_indices", "ds_index"])
ChoiceBatch.__doc__ = """Index batch of a ChoiceDataSource: ``sample_indices`` drawn from member ``ds_index``.

A named tuple; :meth:`ChoiceDataSource.batch_indices_iterator` yields them
and :meth:`ChoiceDataSource.fetch_batch` takes them.

Parameters
----------
sample_indices : numpy.ndarray of int
    The member's absolute sample indices for this batch.
ds_index : int
    The member's position in ``datasets``.
"""


def stratified_schedule(counts: Any) -> np.ndarray:
    """Return member numbers, member ``i`` appearing ``counts[i]`` times, evenly spread.

    Parameters
    ----------
    counts : sequence of int
        The number of batches of each member.

    Returns
    -------
    numpy.ndarray
        ``sum(counts)`` member numbers: the stratified schedule of an
        unshuffled :class:`ChoiceDataSource`.

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


def _round_order(key: Any, epoch: int, r: int, k: int) -> np.ndarray:
    """Return the order in which round ``r`` visits the ``k`` members (in order, or from ``(seed, epoch, r)``)."""
    if key is None:
        return np.arange(k)
    return key.generator(epoch, r).permutation(k)


def _seeded_schedule(counts: list, key: Any, epoch: int) -> np.ndarray:
    """Return the stratified schedule: evenly spread, or shuffled from ``(seed, epoch)``."""
    if key is None:
        return stratified_schedule(counts)
    sched = np.repeat(np.arange(len(counts)), counts).astype(int)
    key.generator(epoch).shuffle(sched)
    return sched


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

    Raises
    ------
    ValueError
        If ``datasets`` is empty.
    TypeError
        If a member is not a data source or ``stratified`` is not a bool.

    Notes
    -----
    With an int seed, round ``r`` of pass ``epoch`` visits the members in an
    order drawn from ``(seed, epoch, r)`` and a stratified schedule is
    shuffled from ``(seed, epoch)``; a ``RandomState`` is drawn from as in
    BatchUp 0.2 (a permutation at the start of each round, or one
    ``shuffle`` of the schedule at the first step).

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
        self.stratified = check_flag("stratified", stratified)
        self._random_access = all(d.is_random_access for d in self.datasets)

    @property
    def is_random_access(self) -> bool:
        return self._random_access

    def num_samples(self, **kwargs: Any) -> Any:
        """Return the members' sample counts added up (those that know theirs).

        Parameters
        ----------
        **kwargs
            Iteration options, passed to every member (an int ``shuffle``
            seed as a child seed per member).

        Returns
        -------
        int or float
            The sum over members; ``np.inf`` if one is endless. A member that
            cannot say (``None``) counts as 0.
        """
        total: Any = 0
        for d, kw in zip(self.datasets, member_kwargs(kwargs, len(self.datasets))):
            n = d.num_samples(**kw)
            if n is not None:
                total = total + n
        return total

    def identity(self) -> dict:
        return {
            "source": "ChoiceDataSource", "stratified": self.stratified,
            "members": [d.identity() for d in self.datasets],
        }

    def _require_random_access(self) -> None:
        if not self._random_access:
            raise TypeError("this ChoiceDataSource has members that are not random access")

    # -- plans ----------------------------------------------------------------------------
    def plan(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> ChoicePlan:
        """Return the plan: the schedule of members and each member's plan (see :class:`ChoicePlan`).

        Parameters
        ----------
        batch_size : int
            Samples per batch, for every member.
        shuffle : bool, int, RandomState or Generator, optional
            As for :meth:`batch_iterator`.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only, passed to
            every member's plan.

        Returns
        -------
        ChoicePlan
            Step ``s`` names its member and that member's batch.

        Raises
        ------
        TypeError
            If a member is not random access, or for an unknown keyword argument.
        """
        self._require_random_access()
        return self._plan(batch_size, plan_options("ChoiceDataSource.plan", kwargs, shuffle))

    def _plan(self, batch_size: Any, options: PlanOptions) -> ChoicePlan:
        plans, endless = member_plans(self.datasets, batch_size, options)
        offsets = None
        if options.epoch and any(endless) and not all(endless):
            # An endless member goes on where the earlier passes left it: count its uses in them.
            used = np.zeros(len(plans), np.int64)
            for p in range(options.epoch):
                earlier, _ = member_plans(self.datasets, batch_size, dataclasses.replace(options, epoch=p))
                used += ChoicePlan(earlier, dataclasses.replace(options, epoch=p), stratified=self.stratified).uses()
            offsets = [int(u) if e else 0 for u, e in zip(used, endless)]
        return ChoicePlan(plans, options, stratified=self.stratified, offsets=offsets)

    def batch_indices_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> Any:
        """Return an iterator of ``ChoiceBatch(sample_indices, ds_index)``, one per batch.

        Parameters
        ----------
        batch_size : int
            Samples per batch, for every member.
        shuffle : bool, int, RandomState or Generator, optional
            As for :meth:`batch_iterator`.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only.

        Returns
        -------
        iterator of ChoiceBatch
            The plan's cursor, with ``state_dict()`` / ``load_state_dict()``.

        Raises
        ------
        TypeError
            If a member is not random access.
        """
        self._require_random_access()
        return self._plan(batch_size, plan_options("ChoiceDataSource.batch_indices_iterator", kwargs, shuffle)).iterator()

    def batch_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> Any:
        """Return an iterator over batches, each taken whole from one member.

        Parameters
        ----------
        batch_size : int
            Samples per batch, for every member.
        shuffle : bool, int, RandomState or Generator, optional
            ``None``/``False``: members in turn, each in order. An int seed:
            each member shuffled with its own child seed, and the order of
            the members in each round (or the stratified schedule) drawn
            from the seed too. An RNG object: drawn from, as BatchUp 0.2 does.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only, passed to
            every member.

        Returns
        -------
        iterator
            Yields the members' batches (tuples of arrays); resumable with
            ``state_dict()`` / ``load_state_dict()`` when the members are.
        """
        if self._random_access:
            plan = self._plan(batch_size, plan_options("ChoiceDataSource.batch_iterator", kwargs, shuffle))
            return BatchIterator(self, plan)
        rng = _rng.resolve_shuffle(shuffle)
        k = len(self.datasets)
        per_member = member_kwargs(dict(kwargs, shuffle=shuffle), k)
        its = [d.batch_iterator(batch_size, **kw) for d, kw in zip(self.datasets, per_member)]
        counts = None
        if self.stratified:
            ns = [d.num_samples(**dict(kw, shuffle=_rng.resolve_shuffle(kw.get("shuffle"))))
                  for d, kw in zip(self.datasets, per_member)]
            if all(n is not None and n != np.inf for n in ns):
                counts = [num_batches(int(n), batch_size) for n in ns]
        own_rng = rng.child(k) if isinstance(rng, _rng.SeedKey) else rng
        return ChoiceBatchIterator(its, own_rng, counts, wrap=False)

    # -- fetching -------------------------------------------------------------------------
    def _member(self, cb: Any) -> Any:
        self._require_random_access()
        if not isinstance(cb, ChoiceBatch):
            raise TypeError(f"indices must be a ChoiceBatch, got {type(cb).__name__}")
        return self.datasets[cb.ds_index]

    def fetch_batch(self, indices: Any, batch_number: int) -> Any:
        """Fetch the batch from the member it names, with the choice source's batch number.

        Parameters
        ----------
        indices : ChoiceBatch
            The member's sample indices and the member's number.
        batch_number : int
            The batch's number in the choice source's plan.

        Returns
        -------
        tuple of arrays
            The member's batch.

        Raises
        ------
        TypeError
            If ``indices`` is not a :class:`ChoiceBatch`.
        """
        return self._member(indices).fetch_batch(indices.sample_indices, batch_number)

    def samples_by_indices_nomapping(self, indices: Any) -> Any:
        """Return the samples of the member named by ``indices``, at its absolute indices.

        Parameters
        ----------
        indices : ChoiceBatch
            The member's absolute sample indices and the member's number.

        Returns
        -------
        tuple of arrays
            ``datasets[ds_index].samples_by_indices_nomapping(sample_indices)``.
        """
        return self._member(indices).samples_by_indices_nomapping(indices.sample_indices)

    def samples_by_indices(self, indices: Any) -> Any:
        """Return the samples of the member named by ``indices``, at positions of its sampler.

        Parameters
        ----------
        indices : ChoiceBatch
            Positions in the member's sampler and the member's number.

        Returns
        -------
        tuple of arrays
            ``datasets[ds_index].samples_by_indices(sample_indices)``.
        """
        return self._member(indices).samples_by_indices(indices.sample_indices)


class ChoicePlan(BatchPlan):
    """The plan of a choice source: step ``s`` is batch ``pos`` of member ``i``.

    Not stratified, round ``r = s // k`` visits the members in its order and
    every member's ``r``-th batch; the run ends at the first step whose
    member has no batch left. Stratified (every member finite), a schedule
    lists each member once per batch it has. The index batch of a step is
    ``ChoiceBatch(member indices, i)``.

    Parameters
    ----------
    plans : list of BatchPlan
        The members' plans, in member order.
    options : PlanOptions
        The choice source's options (its seed orders the members).
    stratified : bool
        Keyword-only. Follow a stratified schedule when every member is finite.
    offsets : list of int, optional
        Keyword-only. Per member, how many batches of its plan earlier
        passes used: member ``i``'s batch ``pos`` is batch ``pos +
        offsets[i]`` of its plan. ``ChoiceDataSource.plan`` sets it for
        the endless members of pass ``epoch > 0`` (they go on where the
        earlier passes left them); ``None`` (the default) is all zeros.
    """

    KIND = "choice"

    def __init__(self, plans: list, options: PlanOptions, *, stratified: bool, offsets: Any = None) -> None:
        self.plans = list(plans)
        self._offsets = list(offsets) if offsets is not None else [0] * len(self.plans)
        k = len(self.plans)
        key = options.shuffle
        self._own = key.child(k) if isinstance(key, _rng.SeedKey) else key
        lengths = [p.num_batches for p in self.plans]
        self.stratified = bool(stratified) and all(n is not None for n in lengths)
        self._stratified_asked = bool(stratified)
        self.random_access = all(p.random_access for p in self.plans) and options.seeded
        self._schedule: Any = None
        self._positions: Any = None
        self._round: tuple = (-1, None)
        self.counts = lengths
        if self.stratified:
            total: Any = int(sum(lengths))
            if self.random_access:
                self._schedule = _seeded_schedule(lengths, self._own, options.epoch)
                self._positions = np.zeros(len(self._schedule), np.int64)
                for i in range(k):
                    where = np.flatnonzero(self._schedule == i)
                    self._positions[where] = np.arange(len(where))
        else:
            total = self._stop_step(lengths, options)
        finite = [n for n in lengths if n is not None]
        if self.stratified:
            samples: Any = sum(p.num_samples for p in self.plans)
        elif not finite:
            samples = np.inf  # every member endless
        else:
            samples = None  # ends at the first member to run out, which depends on the order
        sizes = {p.batch_size for p in self.plans}
        bound = min(finite) * len(self.plans) + len(self.plans) if finite else None
        self._setup(options, sizes.pop() if len(sizes) == 1 else None, total, samples, bound)
        # A shuffled round order decides which member runs out first, so the count varies by epoch
        # unless every member has as many batches as the shortest.
        self.fixed_length = all(p.fixed_length for p in self.plans) and (
            self.stratified or self._own is None or len(set(finite)) <= 1 and len(finite) == len(lengths)
        )

    def _stop_step(self, lengths: list, options: PlanOptions) -> int | None:
        if any(p.num_batches is None and p.num_samples != np.inf for p in self.plans):
            return None  # a member of unknown length
        finite = [n for n in lengths if n is not None]
        if not finite:
            return None  # every member endless
        if not self.random_access:
            return None  # the deciding round's order is drawn later, from the RNG object
        low = min(finite)
        order = _round_order(self._own, options.epoch, low, len(self.plans))
        first = next(j for j, i in enumerate(order) if lengths[i] == low)
        return low * len(self.plans) + first

    def _step(self, s: int) -> tuple:
        """Return ``(member, position in the member's plan)`` of step ``s``."""
        if self._schedule is not None:
            return int(self._schedule[s]), int(self._positions[s])
        k = len(self.plans)
        r, j = divmod(s, k)
        cached_r, order = self._round
        if cached_r != r:
            order = _round_order(self._own, self.options.epoch, r, k)
            self._round = (r, order)
        return int(order[j]), r

    def uses(self) -> np.ndarray:
        """Return how many batches of each member this pass takes (random-access plans of known length).

        Returns
        -------
        ndarray of int, shape (members,)
            Entry ``i`` counts the steps of this pass that take a batch of
            member ``i``; they sum to ``num_batches``. All zeros when the
            pass's length is unknown or endless (``num_batches`` is ``None``).
            Not meaningful for a plan that draws from an RNG object.
        """
        k = len(self.plans)
        n = self.num_batches or 0
        if self._schedule is not None:
            return np.bincount(self._schedule[:n], minlength=k)
        rounds, rest = divmod(n, k)
        used = np.full(k, rounds, np.int64)
        if rest:
            used[_round_order(self._own, self.options.epoch, rounds, k)[:rest]] += 1
        return used

    def indices(self, b: int) -> ChoiceBatch:
        if not self.random_access:
            return super().indices(b)
        i, pos = self._step(b)
        return ChoiceBatch(self.plans[i].indices(pos + self._offsets[i]), i)

    def padding(self, b: int) -> Any:
        if not self.random_access:
            return None
        i, pos = self._step(b)
        return self.plans[i].padding(pos + self._offsets[i])

    def _identity(self) -> dict:
        return {"stratified": self._stratified_asked, "members": [p.fingerprint() for p in self.plans]}

    def adopt(self, fingerprint: Any) -> ChoicePlan:
        members = fingerprint.get("members") if isinstance(fingerprint, Mapping) else None
        if not isinstance(members, list) or len(members) != len(self.plans):
            return self
        plans = [p.adopt(fp) for p, fp in zip(self.plans, members)]
        if all(a is b for a, b in zip(plans, self.plans)):
            return self
        return ChoicePlan(plans, self.options, stratified=self._stratified_asked, offsets=self._offsets)

    def iterator(self) -> Any:
        if self.random_access:
            return super().iterator()
        counts = self.counts if self.stratified else None
        cursor = ChoiceBatchIterator(
            [p.iterator() for p in self.plans], self._own, counts, wrap=True, epoch=self.options.epoch
        )
        cursor.plan = self
        return cursor


class ChoiceBatchIterator(StatefulIterator):
    """Take the next batch from the member chosen for each step, member iterators advanced in turn.

    Used for members that are not random access and for plans that draw
    from an RNG object. Non-stratified: round ``r`` visits the members in
    order, or in the order ``rng.permutation(k)`` drawn at the start of the
    round (BatchUp 0.2), or the seeded order of :class:`ChoicePlan`.
    Stratified: a schedule computed once (shuffled with ``rng.shuffle`` at
    the first step).

    Parameters
    ----------
    members : list of iterator
        The members' batch (or index batch) iterators.
    rng : None, SeedKey or RNG object
        What orders the members: ``None`` in turn, a seed, or an RNG object
        drawn from.
    counts : list of int or None
        Batches per member for a stratified schedule; ``None`` takes turns.
    wrap : bool
        Yield ``ChoiceBatch(batch, member)`` (index iterators) instead of the
        batch itself.
    epoch : int, default 0
        The pass, for seeded orders.
    """

    KIND = "choice"

    def __init__(self, members: list, rng: Any, counts: Any, wrap: bool, epoch: int = 0) -> None:
        self._members = members
        self._rng = rng
        self._counts = counts
        self._wrap = wrap
        self._epoch = epoch
        self._step = 0
        self._done = False
        self._order: Any = None  # schedule, or the current round's order
        self._rng_mark: Any = None
        self.plan: Any = None
        self.last_padding: Any = None

    @property
    def position(self) -> int:
        """Steps taken so far."""
        return self._step

    def _legacy(self) -> bool:
        return self._rng is not None and not isinstance(self._rng, _rng.SeedKey)

    def _make_order(self) -> None:
        k = len(self._members)
        rng = self._rng
        if self._counts is not None:
            if self._legacy():
                sched = np.repeat(np.arange(k), self._counts).astype(int)
                self._rng_mark = _rng.capture_rng_state(rng)
                rng.shuffle(sched)
                self._order = sched
            else:
                self._order = _seeded_schedule(self._counts, rng, self._epoch)
        elif self._legacy():
            self._rng_mark = _rng.capture_rng_state(rng)
            self._order = rng.permutation(k)
        else:
            self._order = _round_order(rng, self._epoch, self._step // k, k)

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
        self.last_padding = getattr(self._members[i], "last_padding", None)
        return ChoiceBatch(batch, i) if self._wrap else batch

    def remaining(self) -> int | None:
        if self._done:
            return 0
        if self._counts is not None:
            return int(sum(self._counts)) - self._step
        return None

    def state_dict(self) -> dict:
        state = {
            "kind": self.KIND,
            "step": self._step,
            "done": self._done,
            "members": [m.state_dict() for m in self._members],
        }
        if self.plan is not None:
            state["plan"] = self.plan.fingerprint()
        if self._legacy():
            state["rng_mark"] = self._rng_mark
            state["rng_now"] = _rng.get_rng_state(self._rng)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        expected: dict = {"kind": self.KIND}
        if self.plan is not None:
            expected["plan"] = self.plan.fingerprint()
        check_state(state, expected, type(self).__name__)
        members = state.get("members")
        if not isinstance(members, list) or len(members) != len(self._members):
            raise ValueError(
                f"ChoiceBatchIterator: the state has {len(members) if isinstance(members, list) else members!r} "
                f"members but this iterator has {len(self._members)}"
            )
        step = state.get("step")
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"ChoiceBatchIterator: malformed state, step must be an int >= 0, got {step!r}")
        for it, s in zip(self._members, members):
            it.load_state_dict(s)
        self._step = step
        self._done = bool(state.get("done"))
        self._order = None
        k = len(self._members)
        needs_order = self._step > 0 and (self._counts is not None or self._step % k != 0)
        legacy = self._legacy()
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
