"""MixtureDataSource: mix several sources sample by sample, in exact proportions per epoch.

A mixture takes every batch's rows from several member sources at once (a
language-model corpus of web text, books and code at 70/20/10; images from
several domains), unlike :class:`~batchup.sources.ChoiceDataSource`, whose
batches come whole from one member.

**The epoch.** Every member is a stream: its own passes (its sampler's
order, shuffled with a seed of its own) joined end to end. An epoch of the
mixture takes exactly ``counts[i]`` samples from member ``i`` — the next
``counts[i]`` of its stream — and interleaves them. By default the epoch
ends when the first member is exhausted: the member with the fewest samples
for its weight is used exactly once, the others in proportion, and what
they leave is used in the next epoch, because their streams go on where
they stopped. With ``epoch_size=S`` an epoch is ``S`` samples split by
weight, and small members repeat within it (upsampling). Either way no
sample is skipped: over epochs, member ``i``'s samples are used in turn,
each pass of it completely before the next.

The plan (:class:`MixturePlan`) puts the epoch's slots in order — in a
smooth interleave, or shuffled from ``(seed, epoch)`` — and cuts, shards and
numbers batches like every other plan (it is a
:class:`~batchup.samplers.FlatPlan` over slots), so mixtures resume,
shard, prefetch and go through every adapter like any random-access source.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from batchup import _rng
from batchup._checks import positive_int, repeats_value
from batchup.samplers.plan import PlanOptions, SeedRequiredError, plan_options
from batchup.sources._members import check_flag, check_members
from batchup.sources._mixing import (
    apportion,
    describe,
    interleave,
    prepend,
    signature,
)
from batchup.sources.base import AbstractDataSource, BatchIterator
from batchup.sources.choice import ChoiceDataSource
from batchup.sources.mixture_plan import MixtureIndices, MixturePlan, _name, _rounded

__all__ = ["MixtureDataSource", "MixtureIndices", "MixturePlan", "apportion"]


def _check_weights(weights: Any, k: int) -> np.ndarray:
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise TypeError(f"weights must be a sequence of {k} numbers (one per member), got {weights!r}")
    w = np.asarray(weights)
    if w.ndim != 1 or len(w) != k:
        raise ValueError(f"weights must hold one number per member ({k}), got {len(w) if w.ndim == 1 else w.shape}"
                         f" in {weights!r}")
    if w.dtype.kind not in "iuf":
        raise TypeError(f"weights must be real numbers, got {weights!r} (dtype {w.dtype})")
    w = w.astype(float)
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"weights must be finite and >= 0; weights[{i}] is {float(w[i])!r}")
    if w.sum() == 0:
        raise ValueError(f"weights are all 0 ({weights!r}); at least one member needs a positive weight")
    return w


# -- the source -------------------------------------------------------------------------------

class MixtureDataSource(AbstractDataSource):
    """Mix the samples of several sources in given proportions, exact in every epoch.

    Parameters
    ----------
    datasets : list of AbstractDataSource
        The members: random-access sources (arrays, subsets, maps,
        composites of them) whose batches have the same structure, dtypes
        and row shapes.
    weights : sequence of float
        One weight per member, finite and >= 0, not all 0; they are
        normalised to proportions. A member of weight 0 is never used.
    epoch_size : int, optional
        Keyword-only. Samples per epoch, split by weight (largest
        remainders). ``None`` (the default): the epoch ends when the first
        member is exhausted (see Notes).
    repeats : int, default 1
        Keyword-only. Epochs per iteration; ``-1`` for forever.
    include_member : bool, default False
        Keyword-only. Put the member number of every row (int64) first in
        every batch.

    Raises
    ------
    TypeError
        If a member is not a random-access data source (or is a
        :class:`ChoiceDataSource` or a mixture, whose batches are not made of
        single samples), or an argument has the wrong type.
    ValueError
        If ``weights`` has the wrong length, a negative, NaN or infinite
        entry, or sums to 0; if ``epoch_size`` or ``repeats`` is out of range.
        When planning: if an epoch would give a member of positive weight no
        sample, or every member is endless and ``epoch_size`` is not given.

    Notes
    -----
    *Epochs.* Member ``i``'s stream is its own passes joined end to end (its
    sampler's order for ``epoch=0, 1, ...``, shuffled with a seed derived
    from ``(seed, i)``). Every epoch of the mixture takes exactly
    ``counts[i]`` samples from member ``i`` — the next ones in its stream —
    so the proportions are exact per epoch, not only on average, and a
    member's samples are all used, in turn, before any is used again.
    By default ``f``, the member with the smallest ``len(member) / weight``,
    is used exactly once per epoch and ``counts[i] = round(len(f) *
    weights[i] / weights[f])`` for the others (never more than their
    length): the epoch ends when the first member is exhausted, and
    the others continue where they stopped in the next epoch. With
    ``epoch_size=S``, ``counts`` splits ``S`` by weight and members whose
    count exceeds their length repeat within the epoch. An endless member
    (``repeats=-1``) never ends an epoch.

    *Order.* In order (no ``shuffle``), the members' samples are spread
    evenly over the epoch (member ``i``'s ``j``-th sample at the relative
    time ``(j + 1/2) / counts[i]``), so every stretch of the epoch has
    nearly the right proportions. With an int seed, epoch ``e``'s order is a
    permutation drawn from ``(seed, e)``: proportions are exact per epoch and
    random per batch. ``shuffle=True``, a ``RandomState`` or a ``Generator``
    gives one int seed drawn from it when the iterator is made (so two
    iterations differ, and a checkpoint records the seed); several ranks
    need an int seed they share.

    *Batches.* Rows are in the drawn order (not grouped by member), which is
    what SGD expects; each member's rows are fetched with one
    ``fetch_batch`` call, passing the mixture's batch number on, so seeded
    ``map`` members give the same batches whatever drives the mixture.
    Sharding deals out the slots of every epoch (``shard=(rank, n)``), so
    ranks get equal batch counts and disjoint samples; with the default
    ``remainder="pad"`` the ranks' samples, less the padding, are exactly
    the epoch (one rank's own counts are only close to the proportions).

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> web = ArrayDataSource([np.arange(0, 7)])
    >>> books = ArrayDataSource([np.arange(100, 104)])
    >>> mix = MixtureDataSource([web, books], [0.7, 0.3])
    >>> [b[0].tolist() for b in mix.batch_iterator(5)]
    [[0, 100, 1, 2, 3], [101, 4, 5, 102, 6]]
    """

    def __init__(self, datasets: list, weights: Any, *, epoch_size: Any = None, repeats: int = 1,
                 include_member: bool = False) -> None:
        self.datasets = check_members("datasets", datasets)
        for i, d in enumerate(self.datasets):
            if isinstance(d, (ChoiceDataSource, MixtureDataSource)):
                raise TypeError(f"datasets[{i}] is a {type(d).__name__}, whose batches are not made of single "
                                "samples; mix its members directly (multiply the weights)")
            if not d.is_random_access:
                raise TypeError(f"datasets[{i}] ({type(d).__name__}) is not random access; a mixture fetches "
                                "samples by index (wrap arrays in ArrayDataSource)")
        self.weights = _check_weights(weights, len(self.datasets))
        self.epoch_size = None if epoch_size is None else positive_int("epoch_size", epoch_size)
        self.repeats = repeats_value(repeats)
        self.include_member = check_flag("include_member", include_member)
        self._reference: Any = None

    @property
    def is_random_access(self) -> bool:
        return True

    def identity(self) -> dict:
        return {
            "source": "MixtureDataSource", "weights": _rounded(self.weights), "epoch_size": self.epoch_size,
            "repeats": -1 if self.repeats is None else self.repeats, "include_member": self.include_member,
            "members": [d.identity() for d in self.datasets],
        }

    def _counts(self, lengths: list, endless: list) -> np.ndarray:
        """Return the samples each member gives an epoch (see the class Notes)."""
        w = self.weights
        if self.epoch_size is not None:
            counts = apportion(w, self.epoch_size)
        else:
            finite = [i for i in range(len(w)) if w[i] > 0 and not endless[i]]
            if not finite:
                raise ValueError("every member with a positive weight is endless, so no member ends an epoch; "
                                 "pass epoch_size=<samples per epoch>")
            f = min(finite, key=lambda i: lengths[i] / w[i])
            counts = np.floor(lengths[f] * w / w[f] + 0.5).astype(np.int64)
            counts[f] = lengths[f]
            cap = np.array([np.iinfo(np.int64).max if e else n for n, e in zip(lengths, endless)])
            counts = np.minimum(counts, cap)
        for i, c in enumerate(counts):
            if c == 0 and w[i] > 0:
                size = "" if self.epoch_size is None else f" of {self.epoch_size} samples"
                raise ValueError(
                    f"an epoch{size} gives {_name(i, self.datasets[i])} no sample at its weight "
                    f"{w[i] / w.sum():.3g}; pass a larger epoch_size or a larger weight")
        return counts

    # -- plans ------------------------------------------------------------------------------
    def plan(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> MixturePlan:
        """Return the plan of ``batch_iterator(batch_size, shuffle, **kwargs)`` (see :class:`MixturePlan`).

        Parameters
        ----------
        batch_size : int
            Rows per batch.
        shuffle : None, bool, int, RandomState or Generator, default None
            As for :meth:`batch_iterator`: ``None``/``False`` a smooth
            interleave; an int seeds epoch ``e``'s order from ``(seed, e)``;
            ``True`` (the global NumPy RNG) or an RNG object gives one int
            seed drawn from it now.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only, as for
            :meth:`batch_iterator`.

        Returns
        -------
        MixturePlan
            Random access: ``plan.indices(b)`` is batch ``b``'s
            :class:`MixtureIndices`; ``len(plan)`` batches unless endless.

        Raises
        ------
        TypeError
            For an unknown keyword argument or a ``batch_size`` that is not an int.
        """
        return self._plan(batch_size, plan_options("MixtureDataSource.plan", kwargs, shuffle))

    def _plan(self, batch_size: Any, options: PlanOptions) -> MixturePlan:
        key = options.shuffle
        if key is not None and not isinstance(key, _rng.SeedKey):
            options = dataclasses.replace(options, shuffle=_rng.SeedKey(_seed_from(key), (), True))
        return MixturePlan(self, batch_size, options)

    def _count_plan(self, batch_size: Any, where: str, kwargs: dict) -> MixturePlan:
        """Return a plan to count with; counts do not depend on the seed, so none is drawn."""
        options = plan_options(where, kwargs)
        if options.shuffle is not None and not isinstance(options.shuffle, _rng.SeedKey):
            options = dataclasses.replace(options, shuffle=_rng.SeedKey(0))
        try:
            return MixturePlan(self, batch_size, options)
        except (NotImplementedError, SeedRequiredError):
            return MixturePlan(self, batch_size, dataclasses.replace(options, shuffle=_rng.SeedKey(0)))

    def num_samples(self, **kwargs: Any) -> Any:
        """Return the samples one iteration yields (this rank's with ``shard``); ``np.inf`` if endless.

        Parameters
        ----------
        **kwargs
            The iteration options of :meth:`batch_iterator` (``shuffle``,
            ``drop_last``, ``shard``, ``epoch``), keyword-only. The count
            does not depend on the seed, so ``shuffle=True`` or an RNG object
            is not drawn from.

        Returns
        -------
        int or float
            ``repeats`` epochs of ``sum(counts)`` samples, or this rank's
            share of them with ``shard`` (wrap-around padding included),
            counted before ``drop_last``; ``np.inf`` with ``repeats=-1``.

        Raises
        ------
        TypeError
            For an unknown keyword argument.

        Examples
        --------
        >>> import numpy as np
        >>> from batchup.sources import ArrayDataSource
        >>> mix = MixtureDataSource([ArrayDataSource([np.arange(7)]), ArrayDataSource([np.arange(4)])],
        ...                         [0.7, 0.3], epoch_size=11)
        >>> mix.num_samples(), mix.num_samples(shard=(1, 2))
        (11, 6)
        """
        return self._count_plan(1, "MixtureDataSource.num_samples", kwargs).num_samples

    def num_batches(self, batch_size: int, **kwargs: Any) -> Any:
        """Return the batches ``batch_iterator(batch_size, **kwargs)`` yields; draws no seed.

        Parameters
        ----------
        batch_size : int
            Rows per batch.
        **kwargs
            The iteration options of :meth:`batch_iterator` (``shuffle``,
            ``drop_last``, ``shard``, ``epoch``), keyword-only, so the count
            is that of the same iteration. ``shuffle=True`` or an RNG object
            is not drawn from: the count does not depend on the seed.

        Returns
        -------
        int or float
            The number of batches (this rank's with ``shard``); ``np.inf``
            with ``repeats=-1``.

        Raises
        ------
        TypeError
            For an unknown keyword argument or a ``batch_size`` that is not an int.

        Examples
        --------
        >>> import numpy as np
        >>> from batchup.sources import ArrayDataSource
        >>> mix = MixtureDataSource([ArrayDataSource([np.arange(7)]), ArrayDataSource([np.arange(4)])],
        ...                         [0.7, 0.3], epoch_size=11)
        >>> mix.num_batches(5), mix.num_batches(5, drop_last=True)
        (3, 2)
        """
        return self._count_plan(batch_size, "MixtureDataSource.num_batches", kwargs).batch_count

    def batch_indices_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> Any:
        """Return an iterator of :class:`MixtureIndices`, one per batch.

        The index batches :meth:`batch_iterator` fetches, for code that
        fetches samples itself (``fetch_batch(indices, batch_number)``).

        Parameters
        ----------
        batch_size : int
            Rows per batch.
        shuffle : None, bool, int, RandomState or Generator, default None
            As for :meth:`batch_iterator`.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only, as for
            :meth:`batch_iterator`.

        Returns
        -------
        IndexBatchIterator
            Yields one :class:`MixtureIndices` per batch; resumable with
            ``state_dict()`` / ``load_state_dict()``.

        Raises
        ------
        TypeError
            For an unknown keyword argument or a ``batch_size`` that is not an int.
        """
        return self._plan(batch_size, plan_options("MixtureDataSource.batch_indices_iterator", kwargs,
                                                   shuffle)).iterator()

    def batch_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> BatchIterator:
        """Return an iterator over mixed batches.

        Parameters
        ----------
        batch_size : int
            Rows per batch.
        shuffle : None, int, bool, RandomState or Generator, default None
            ``None`` in a smooth interleave; an int seeds epoch ``e``'s order
            from ``(seed, e)``; ``True`` or an RNG object gives one seed drawn
            from it now.
        **kwargs
            Keyword-only iteration options, as for every source (see
            :meth:`RandomAccessDataSource.batch_iterator
            <batchup.sources.RandomAccessDataSource.batch_iterator>`):

            drop_last : bool, default False
                Drop a final short batch.
            shard : (rank, num_shards) or ShardSpec, optional
                Take only this rank's part of the slots of every epoch; every
                rank gets the same number of batches. Needs an int seed shared
                by all ranks when shuffled.
            epoch : int, default 0
                Which pass over the data (pass ``e`` covers the mixture's
                epochs ``e * repeats ..``); members continue their streams.

        Returns
        -------
        BatchIterator
            Yields one batch per step: the members' batch structure (a tuple
            or list of arrays) with rows in the drawn order, the int64 member
            number of every row first with ``include_member``; has ``len()``,
            ``remaining()`` and ``state_dict()`` / ``load_state_dict()``.

        Raises
        ------
        TypeError
            For an unknown keyword argument or a ``batch_size`` that is not an int.
        """
        plan = self._plan(batch_size, plan_options("MixtureDataSource.batch_iterator", kwargs, shuffle))
        return BatchIterator(self, plan)

    # -- fetching ---------------------------------------------------------------------------
    def fetch_batch(self, indices: Any, batch_number: int) -> Any:
        """Fetch every member's rows (with the mixture's batch number) and put them in row order.

        The first call also fetches one row of every member of positive
        weight that is not in the batch, so members whose batches do not
        match fail at once rather than batches later.

        Parameters
        ----------
        indices : MixtureIndices
            An index batch from :meth:`plan` (``plan.indices(b)``) or
            :meth:`batch_indices_iterator`.
        batch_number : int
            The batch's number in the mixture's plan
            (``plan.batch_number(b)``), passed on to every member's
            ``fetch_batch``, so seeded ``map`` members give the same batch
            whatever drives the mixture.

        Returns
        -------
        tuple or list of arrays
            The members' batch structure with ``len(indices.member)`` rows in
            row order; with ``include_member``, the int64 member number of
            every row comes first.

        Raises
        ------
        TypeError
            If ``indices`` is not a :class:`MixtureIndices`, or the members'
            batches are not NumPy arrays (or tuples or lists of them).
        ValueError
            If the members' batches differ in structure, dtype or row shape,
            or a member returns another number of rows than it was asked for.
        """
        if not isinstance(indices, MixtureIndices):
            raise TypeError(f"indices must be a MixtureIndices, got {type(indices).__name__}")
        member = np.asarray(indices.member)
        batches = {i: self.datasets[i].fetch_batch(part, batch_number)
                   for i, part in enumerate(indices.parts) if part is not None}
        if self._reference is None:
            self._reference = self._first_check(batches, indices.probes, batch_number)
        rows = {i: np.flatnonzero(member == i) for i in batches}
        for i, batch in batches.items():
            self._check(i, batch, len(rows[i]))
        if len(batches) == 1:
            (out,) = batches.values()
        else:
            first = min(batches)
            out = interleave(batches[first], batches, rows, len(member))
        return prepend(out, member.astype(np.int64)) if self.include_member else out

    def _first_check(self, batches: dict, probes: Any, batch_number: int) -> tuple:
        """Fetch one row of every member not in the first batch, so a mismatch shows at once."""
        sigs = {i: signature(b) for i, b in batches.items()}
        for i, probe in enumerate(probes):
            if probe is not None and i not in sigs:
                sigs[i] = signature(self.datasets[i].fetch_batch(probe, batch_number))
        ref = min(sigs)
        reference = (ref, sigs[ref])
        for i in sorted(sigs):
            self._compare(i, sigs[i], reference)
        if "not an array" in repr(sigs[ref]):
            raise TypeError(f"{_name(ref, self.datasets[ref])} gives batches of {describe(sigs[ref])}; a mixture "
                            "mixes batches of NumPy arrays (tuples or lists of them) row by row")
        return reference

    def _compare(self, i: int, sig: Any, reference: tuple) -> None:
        ref, want = reference
        if sig != want:
            raise ValueError(
                f"the members' batches differ: {_name(ref, self.datasets[ref])} gives {describe(want)} but "
                f"{_name(i, self.datasets[i])} gives {describe(sig)}; every member's batches must have the same "
                "structure, dtypes and row shapes (convert with .map(...) before mixing)")

    def _check(self, i: int, batch: Any, n: int) -> None:
        sig = signature(batch)
        self._compare(i, sig, self._reference)
        leaves = [batch]
        while leaves:
            x = leaves.pop()
            if isinstance(x, (tuple, list)):
                leaves.extend(x)
            elif len(x) != n:
                raise ValueError(f"{_name(i, self.datasets[i])} returned {len(x)} rows for {n} indices; a mixture "
                                 "needs members whose batches keep one row per index")


def _seed_from(rng: Any) -> int:
    """Draw one int seed from an RNG object (as the adapters do for ``shuffle=RandomState``)."""
    rng = _rng.legacy(rng)
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(0, _rng.SEED_MAX, dtype=np.int64))
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, _rng.SEED_MAX))
    raise TypeError(f"a mixture cannot draw a seed from {rng!r}; pass an int seed, a RandomState or a Generator")
