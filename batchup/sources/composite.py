"""CompositeDataSource: draw one batch from every member and combine them.

The typical use is semi-supervised learning: a small labelled source that
repeats forever beside a large unlabelled one that defines the epoch. The
members are advanced together, like ``zip``; for random-access members the
composite's plan is a :class:`ZipPlan` of the members' plans, and every
member is fetched with the composite's batch number.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from batchup._iterator import StatefulIterator, WrappingIterator, check_state
from batchup.samplers.plan import BatchPlan, PlanOptions, plan_options
from batchup.sources._batches import batch_length, prepare, trim_batch
from batchup.sources._members import check_flag, check_members, member_kwargs, member_options, member_plans
from batchup.sources.base import AbstractDataSource, BatchIterator

__all__ = ["CompositeBatchIterator", "CompositeDataSource", "ZipPlan"]


class CompositeDataSource(AbstractDataSource):
    """Combine the batches of several sources, advanced together like ``zip``.

    Parameters
    ----------
    datasets : list of AbstractDataSource
        The members (at least one); composites may be nested to any depth.
    flatten : bool, default True
        Join the members' batch tuples into one tuple (one level deep);
        otherwise yield a tuple of the members' batches.
    trim : bool, default True
        Cut every member's batch to the shortest one's length.

    Raises
    ------
    ValueError
        If ``datasets`` is empty.
    TypeError
        If a member is not a data source, or ``flatten``/``trim`` is not a bool.

    Notes
    -----
    Iteration stops as soon as any member is exhausted. Every member gets
    the same keyword arguments; an int ``shuffle`` seed is split into an
    independent seed per member, while a ``RandomState`` is shared and drawn
    from in member order, as in BatchUp 0.2. A seeded ``map`` member gets
    the composite's batch number, so its batches do not depend on how the
    composite is driven.

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
        self.flatten = check_flag("flatten", flatten)
        self.trim = check_flag("trim", trim)
        self._random_access = all(d.is_random_access for d in self.datasets)

    @property
    def is_random_access(self) -> bool:
        return self._random_access

    def num_samples(self, **kwargs: Any) -> Any:
        """Return the smallest member's sample count (iteration stops with it).

        Parameters
        ----------
        **kwargs
            Iteration options, passed to every member (an int ``shuffle``
            seed as a child seed per member).

        Returns
        -------
        int, float or None
            The minimum over the members that know their count; ``None`` if
            none does.
        """
        counts = [d.num_samples(**kw) for d, kw in zip(self.datasets, member_kwargs(kwargs, len(self.datasets)))]
        known = [c for c in counts if c is not None]
        return min(known) if known else None

    def identity(self) -> dict:
        return {
            "source": "CompositeDataSource", "flatten": self.flatten, "trim": self.trim,
            "members": [d.identity() for d in self.datasets],
        }

    def _require_random_access(self) -> None:
        if not self._random_access:
            raise TypeError("this CompositeDataSource has members that are not random access")

    # -- plans ----------------------------------------------------------------------------
    def plan(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> ZipPlan:
        """Return the zip of the members' plans (see :class:`ZipPlan`).

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
        ZipPlan
            Batch ``b`` is every member's batch ``b``.

        Raises
        ------
        TypeError
            If a member is not random access, or for an unknown keyword argument.
        """
        self._require_random_access()
        return self._plan(batch_size, plan_options("CompositeDataSource.plan", kwargs, shuffle))

    def _plan(self, batch_size: Any, options: PlanOptions, trim: bool | None = None) -> ZipPlan:
        plans, endless = member_plans(self.datasets, batch_size, options)
        offsets = [0] * len(plans)
        if options.epoch and any(endless) and not all(endless):
            # An endless member goes on where the earlier passes of the composite left it.
            before = sum(self._pass_length(batch_size, options, p, endless) for p in range(options.epoch))
            offsets = [before if e else 0 for e in endless]
        return ZipPlan(plans, options, trim=self.trim if trim is None else trim, offsets=offsets)

    def _pass_length(self, batch_size: Any, options: PlanOptions, epoch: int, endless: list) -> int:
        """Return the number of batches of pass ``epoch``: its shortest finite member's."""
        opts = member_options(dataclasses.replace(options, epoch=epoch), len(self.datasets))
        counts = [d._plan(batch_size, o).num_batches for d, o, e in zip(self.datasets, opts, endless) if not e]
        known = [n for n in counts if n is not None]
        return min(known) if known else 0

    def batch_indices_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> Any:
        """Zip the members' index iterators; always trims, never flattens (as BatchUp 0.2).

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
        iterator of tuple
            Yields one index array per member for every batch.

        Raises
        ------
        TypeError
            If a member is not random access.
        """
        self._require_random_access()
        options = plan_options("CompositeDataSource.batch_indices_iterator", kwargs, shuffle)
        return self._plan(batch_size, options, trim=True).iterator()

    def batch_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> Any:
        """Return an iterator over the combined batches of the members.

        Parameters
        ----------
        batch_size : int
            Samples per batch, for every member.
        shuffle : bool, int, RandomState or Generator, optional
            ``None``/``False`` in order; an int seed shuffles every member with
            its own child seed; an RNG object is shared and drawn from in
            member order (BatchUp 0.2).
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only, passed to
            every member.

        Returns
        -------
        iterator
            Yields one tuple per batch: the members' arrays joined (``flatten``)
            or the members' batch tuples; resumable with ``state_dict()`` /
            ``load_state_dict()`` when the members are.
        """
        if self._random_access:
            plan = self._plan(batch_size, plan_options("CompositeDataSource.batch_iterator", kwargs, shuffle))
            return BatchIterator(self, plan)
        if shuffle is not None:
            kwargs = dict(kwargs, shuffle=shuffle)
        its = [
            d.batch_iterator(batch_size, **kw)
            for d, kw in zip(self.datasets, member_kwargs(kwargs, len(self.datasets)))
        ]
        return CompositeBatchIterator(its, self.trim, self.flatten)

    # -- fetching -------------------------------------------------------------------------
    def _check_indices(self, indices: Any) -> None:
        self._require_random_access()
        if len(indices) != len(self.datasets):
            raise ValueError(
                f"indices must hold one entry per member: got {len(indices)} entries for "
                f"{len(self.datasets)} members"
            )

    def fetch_batch(self, indices: Any, batch_number: int) -> tuple:
        """Fetch every member's batch with the composite's batch number and combine them.

        Parameters
        ----------
        indices : sequence of numpy.ndarray
            One index array per member.
        batch_number : int
            The batch's number in the composite's plan.

        Returns
        -------
        tuple
            The members' batches, trimmed and flattened as configured.

        Raises
        ------
        ValueError
            If ``indices`` does not hold one entry per member.
        """
        self._check_indices(indices)
        batches = [d.fetch_batch(ix, batch_number) for d, ix in zip(self.datasets, indices)]
        return prepare(batches, self.trim, self.flatten)

    def _by_indices(self, indices: Any, method: str) -> tuple:
        self._check_indices(indices)
        batches = [getattr(d, method)(ix) for d, ix in zip(self.datasets, indices)]
        return prepare(batches, self.trim, self.flatten)

    def samples_by_indices_nomapping(self, indices: Any) -> tuple:
        """Return every member's samples at its absolute indices, combined.

        Parameters
        ----------
        indices : sequence of numpy.ndarray
            One array of absolute indices per member.

        Returns
        -------
        tuple
            The members' samples, trimmed and flattened as configured.
        """
        return self._by_indices(indices, "samples_by_indices_nomapping")

    def samples_by_indices(self, indices: Any) -> tuple:
        """Return every member's samples at positions of its sampler, combined.

        Parameters
        ----------
        indices : sequence of numpy.ndarray
            One array of sampler positions per member.

        Returns
        -------
        tuple
            The members' samples, trimmed and flattened as configured.
        """
        return self._by_indices(indices, "samples_by_indices")


class ZipPlan(BatchPlan):
    """The plan of a composite: batch ``b`` is every member's batch ``b``.

    The run ends with the shortest member. With ``trim`` the index batches
    are cut to the shortest member's length. The padding mask (sharded
    members) is a tuple with one mask per member, or ``None``. ``offsets``
    shift members that never end: in pass ``e`` of a finite composite an
    endless member continues where pass ``e - 1`` left it.

    Parameters
    ----------
    plans : list of BatchPlan
        The members' plans, in member order.
    options : PlanOptions
        The composite's options.
    trim : bool, default True
        Keyword-only. Cut every index batch to the shortest member's length.
    offsets : list of int, optional
        Keyword-only. Per member, the position its batch 0 is taken from
        (non-zero only for endless members in later passes).
    """

    KIND = "zip"

    def __init__(self, plans: list, options: PlanOptions, *, trim: bool = True, offsets: Any = None) -> None:
        self.plans = list(plans)
        self._offsets = list(offsets) if offsets is not None else [0] * len(self.plans)
        finite = [p.num_batches for p in self.plans if p.num_batches is not None]
        unknown = any(p.num_batches is None and p.num_samples != np.inf for p in self.plans)
        count = None if unknown or not finite else min(finite)
        samples = [p.num_samples for p in self.plans if p.num_samples is not None]
        sizes = {p.batch_size for p in self.plans}
        self._trim = bool(trim)
        self._setup(options, sizes.pop() if len(sizes) == 1 else None, count, min(samples) if samples else None)
        self.random_access = all(p.random_access for p in self.plans)
        self.fixed_length = all(p.fixed_length for p in self.plans)

    def _cut(self, parts: list) -> tuple:
        if self._trim and len(parts) > 1:
            n = min(batch_length(x) for x in parts)
            parts = [trim_batch(x, n) for x in parts]
        return tuple(parts)

    def indices(self, b: int) -> tuple:
        if not self.random_access:
            return super().indices(b)
        return self._cut([p.indices(b + off) for p, off in zip(self.plans, self._offsets)])

    def padding(self, b: int) -> Any:
        masks = [p.padding(b + off) for p, off in zip(self.plans, self._offsets)]
        if all(m is None for m in masks):
            return None
        return self._cut([np.zeros(0, bool) if m is None else m for m in masks])

    def _identity(self) -> dict:
        return {"trim": self._trim, "members": [p.fingerprint() for p in self.plans]}

    def adopt(self, fingerprint: Any) -> ZipPlan:
        members = fingerprint.get("members") if isinstance(fingerprint, Mapping) else None
        if not isinstance(members, list) or len(members) != len(self.plans):
            return self
        plans = [p.adopt(fp) for p, fp in zip(self.plans, members)]
        if all(a is b for a, b in zip(plans, self.plans)):
            return self
        return ZipPlan(plans, self.options, trim=self._trim, offsets=self._offsets)

    def restore(self, fingerprint: Any, position: Any, where: str) -> tuple:
        """Restore every member (members may resume on another number of ranks, all alike).

        Parameters
        ----------
        fingerprint : dict
            The ``"plan"`` field of the state, with one fingerprint per member.
        position : int
            The ``"position"`` field of the state.
        where : str
            The restoring iterator's name, for the messages.

        Returns
        -------
        tuple of (BatchPlan, int)
            The plan to walk from now on and the position in it.

        Raises
        ------
        ValueError
            If the state belongs to another composite or the members cannot
            resume at one position.
        """
        mine = self.fingerprint()
        if not isinstance(fingerprint, Mapping) or not isinstance(fingerprint.get("members"), list):
            return super().restore(fingerprint, position, where)
        own = {k: v for k, v in mine.items() if k not in ("members", "shard")}
        check_state(fingerprint, own, where, "plan.")
        members = fingerprint["members"]
        if len(members) != len(self.plans):
            check_state(fingerprint, {"members": mine["members"]}, where, "plan.")
        restored = [p.restore(fp, position, where) for p, fp in zip(self.plans, members)]
        positions = {pos for _, pos in restored}
        if len(positions) != 1:
            raise ValueError(f"{where}: the members of this composite cannot all resume at one position")
        plans = [p for p, _ in restored]
        if all(a is b for a, b in zip(plans, self.plans)):
            return self, positions.pop()
        return ZipPlan(plans, self.options, trim=self._trim, offsets=self._offsets), positions.pop()

    def iterator(self) -> Any:
        return super().iterator() if self.random_access else ZipCursor(self)


class ZipCursor(StatefulIterator):
    """Walk a :class:`ZipPlan` whose members draw from an RNG object: advance them together, in order."""

    KIND = "index"

    def __init__(self, plan: ZipPlan) -> None:
        self.plan = plan
        self.position = 0
        self.last_padding: Any = None
        self._members = [p.iterator() for p in plan.plans]
        self._done = False

    def __next__(self) -> tuple:
        if self._done:
            raise StopIteration
        parts = []
        for it in self._members:
            try:
                parts.append(next(it))
            except StopIteration:
                self._done = True
                raise
        b = self.position
        self.position = b + 1
        self.last_padding = self.plan.padding(b)
        return self.plan._cut(parts)

    def remaining(self) -> int | None:
        n = self.plan.num_batches
        return 0 if self._done else None if n is None else n - self.position

    def state_dict(self) -> dict:
        return {
            "kind": self.KIND, "plan": self.plan.fingerprint(), "position": self.position, "done": self._done,
            "members": [m.state_dict() for m in self._members],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        where = type(self).__name__
        check_state(state, {"kind": self.KIND, "plan": self.plan.fingerprint()}, where)
        members = state.get("members")
        if not isinstance(members, list) or len(members) != len(self._members):
            raise ValueError(f"{where}: the state does not fit this plan: it needs {len(self._members)} members")
        position = self.plan.check_position(state.get("position"))
        for it, s in zip(self._members, members):
            it.load_state_dict(s)
        self.position = position
        self._done = bool(state.get("done"))


class CompositeBatchIterator(WrappingIterator):
    """Advance member batch iterators together (members that are not random access); stop when any stops.

    Parameters
    ----------
    members : list of iterator
        The members' batch iterators.
    trim : bool
        Cut every member's batch to the shortest one's length.
    flatten : bool
        Join the members' batch tuples into one tuple.
    """

    KIND = "composite"
    INNER_KEY = "members"

    def __init__(self, members: list, trim: bool, flatten: bool) -> None:
        super().__init__(members)
        self._trim = trim
        self._flatten = flatten
        self._done = False

    def __next__(self) -> tuple:
        if self._done:
            raise StopIteration
        batches = []
        for it in self._inner:
            try:
                batches.append(next(it))
            except StopIteration:
                self._done = True
                raise
        return prepare(batches, self._trim, self._flatten)

    @property
    def last_padding(self) -> Any:
        return None

    def remaining(self) -> Any:
        if self._done:
            return 0
        lefts = [getattr(m, "remaining", lambda: None)() for m in self._inner]
        known = [x for x in lefts if x is not None]
        return min(known) if known else None

    def _inner_state(self) -> Any:
        out = []
        for m in self._inner:
            fn = getattr(m, "state_dict", None)
            if fn is None:
                raise TypeError(f"cannot checkpoint: the member iterator {m!r} has no state_dict()")
            out.append(fn())
        return out

    def _load_inner_state(self, state: Any) -> None:
        if not isinstance(state, list) or len(state) != len(self._inner):
            n = len(state) if isinstance(state, list) else state
            raise ValueError(
                f"CompositeBatchIterator: the state has {n} members but this iterator has {len(self._inner)}"
            )
        for it, s in zip(self._inner, state):
            fn = getattr(it, "load_state_dict", None)
            if fn is None:
                raise TypeError(f"cannot restore: the member iterator {it!r} has no load_state_dict()")
            fn(s)

    def _own_state(self) -> dict:
        return {"done": self._done}

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        self._done = bool(state["done"])
