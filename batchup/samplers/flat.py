"""FlatPlan: epochs of samples joined end to end and cut into batches.

This is BatchUp 0.2's index stream, reduced to arithmetic. The run is a
sequence of flat positions ``0 .. m * repeats`` where ``m`` is the number of
samples this rank takes per epoch; batch ``b`` covers positions
``b * bs .. (b + 1) * bs``, and position ``p`` is element ``p % m`` of the
order of epoch ``p // m``. Batches therefore run across epoch boundaries
and only the last batch of a finite run is short (or dropped).

The order of one epoch is whatever the sampler's ``draw`` function returns
for that epoch's generator: a permutation (standard and subset samplers), a
weighted draw, or a plan of whole balanced batches (then each *item* of the
order is a row of ``unit`` samples and sharding deals out whole rows). With
an int seed epoch ``e`` is drawn from ``(seed, e)``, so any batch can be
computed directly (random access) and a checkpoint is a position. With an
RNG object the plan is walked in order by :class:`~batchup.samplers._drawn.DrawnIndexBatchIterator`,
which reproduces BatchUp 0.2's draws exactly.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from batchup import _rng
from batchup._checks import positive_int
from batchup._iterator import normalise as _norm
from batchup.samplers.plan import BatchPlan, PlanOptions, SeedRequiredError

__all__ = ["FlatPlan"]

#: ``draw(rng)`` returns one epoch's global order: ``(items,)`` sample indices, or
#: ``(items, unit)`` rows; ``rng`` is ``None`` (natural order), a Generator or an RNG object.
DrawFn = Callable[[Any], np.ndarray]


class FlatPlan(BatchPlan):
    """Epochs of a sampler's order joined end to end, cut into batches of ``batch_size``.

    Parameters
    ----------
    draw : callable
        ``draw(rng)`` returns the global order of one epoch (see the module docstring).
    items : int
        Items per epoch before sharding (samples, or rows of ``unit`` samples).
    batch_size : int
        Samples per batch.
    repeats : int or None
        Epochs per run; ``None`` is endless.
    options : PlanOptions
        Shuffle, drop_last, shard and epoch.
    unit : int, default 1
        Samples per item; sharding deals whole items.
    identity : dict, optional
        Fields that identify the sampler in checkpoints.
    legacy_surplus : bool, default False
        Draw one extra permutation at the end of a multi-epoch run from an
        RNG object, as BatchUp 0.2 does (standard and subset samplers).
    allow_empty : bool, default False
        Accept a finite run that gives this rank no batch (by default that is
        a ``ValueError``, as it usually means too many ranks).

    Raises
    ------
    ValueError
        If the run would be endless over no samples, if sharding or
        ``drop_last`` leave this rank no batch, or if several ranks would
        shuffle with an RNG object or a drawn seed (they must share an int seed).
    """

    KIND = "flat"

    def __init__(
        self,
        draw: DrawFn,
        items: int,
        batch_size: int,
        repeats: int | None,
        options: PlanOptions,
        *,
        unit: int = 1,
        identity: dict | None = None,
        legacy_surplus: bool = False,
        allow_empty: bool = False,
    ) -> None:
        bs = positive_int("batch_size", batch_size)
        shard = options.shard
        if shard is not None and shard.num_shards > 1:
            key = options.shuffle
            if not options.seeded or (isinstance(key, _rng.SeedKey) and key.drawn):
                shown = "a seed drawn at random" if options.seeded else repr(key)
                raise SeedRequiredError(
                    "sharding needs every rank to draw the same order, so shuffle must be an int seed "
                    f"shared across ranks (shuffle=<int>, or the sampler's seed=<int>); got {shown}"
                )
        self._draw = draw
        self._items = int(items)
        self._unit = int(unit)
        self._repeats = repeats
        self._identity_fields = dict(identity or {})
        self.legacy_surplus = bool(legacy_surplus)
        per_rank = self._items if shard is None else shard.per_rank(self._items)
        self.samples_per_epoch = per_rank * self._unit
        m = self.samples_per_epoch
        if repeats is None:
            if m == 0:
                raise ValueError(
                    "cannot repeat an empty set of samples forever (repeats=-1 over 0 samples"
                    + ("" if shard is None else f" on rank {shard.rank} of {shard.num_shards}") + ")"
                )
            total = None
            count = None
            samples: Any = np.inf
        else:
            total = m * repeats
            count = total // bs if options.drop_last else -(-total // bs)
            samples = total
            if count == 0 and self._items > 0 and (shard is not None or options.drop_last) and not allow_empty:
                why = []
                if shard is not None:
                    why.append(f"rank {shard.rank} of {shard.num_shards} takes {m} of {self._items * self._unit} samples")
                if options.drop_last:
                    why.append(f"drop_last=True with batch_size={bs}")
                raise ValueError(f"this plan gives no batch at all ({'; '.join(why)}); use fewer ranks or "
                                 "a smaller batch size, or drop_last=False")
        self._total = total
        self._setup(options, bs, count, samples)
        self.random_access = options.seeded
        self.spans = self.random_access and shard is None
        self.first_epoch = options.epoch * (repeats or 0)
        self._cache: dict = {}
        self._pad: np.ndarray | None = None
        if shard is not None:
            self._pad = np.repeat(shard.padding(self._items), self._unit)

    @property
    def repeats(self) -> int | None:
        """Epochs in the run (``None``: endless)."""
        return self._repeats

    # -- one epoch -----------------------------------------------------------------------
    def epoch_order(self, rng: Any) -> np.ndarray:
        """Return this rank's order of one epoch drawn from ``rng`` (``None``: natural order).

        Parameters
        ----------
        rng : numpy.random.Generator, RNG object or None
            Passed to ``draw``.

        Returns
        -------
        numpy.ndarray
            int64 sample indices of the epoch on this rank (this shard's
            share of the global order, padded by wrap-around), flattened.
        """
        order = np.asarray(self._draw(rng))
        shard = self.options.shard
        if shard is not None:
            order = shard.select(order)
        return order.reshape(-1).astype(np.int64, copy=False)

    def global_order(self, e: int) -> np.ndarray:
        """Return the global order of epoch ``e`` of this run (relative), before sharding.

        Parameters
        ----------
        e : int
            The epoch within this run, from 0 (the run's first epoch is
            ``first_epoch`` of the sampler).

        Returns
        -------
        numpy.ndarray
            What ``draw`` returns for that epoch: sample indices, or rows of
            ``unit`` samples.
        """
        key = self.options.shuffle
        return np.asarray(self._draw(None if key is None else key.generator(self.first_epoch + e)))

    def _order(self, e: int) -> np.ndarray:
        """Return this rank's order of epoch ``e`` of this run (relative), computed once and cached."""
        got = self._cache.get(e)
        if got is not None:
            return got
        order = self._rank_order(e)
        if len(self._cache) >= 2:
            self._cache.clear()
        self._cache[e] = order
        return order

    def _rank_order(self, e: int) -> np.ndarray:
        key = self.options.shuffle
        return self.epoch_order(None if key is None else key.generator(self.first_epoch + e))

    # -- where a flat position lies (a resumed run's first epoch may be shorter) -------------
    def _locate(self, p: int) -> tuple:
        """Return ``(epoch, offset)`` of this rank's flat position ``p``."""
        return divmod(p, self.samples_per_epoch)

    def _epoch_len(self, e: int) -> int:
        return self.samples_per_epoch

    def _pad_of(self, e: int) -> np.ndarray:
        assert self._pad is not None
        return self._pad

    # -- BatchPlan -----------------------------------------------------------------------
    def _positions(self, b: int) -> tuple:
        bs = self.batch_size
        assert bs is not None
        p0 = b * bs
        p1 = p0 + bs if self._total is None else min(p0 + bs, self._total)
        return p0, p1

    def indices(self, b: int) -> np.ndarray:
        if not self.random_access:
            return super().indices(b)
        p0, p1 = self._positions(b)
        e, off = self._locate(p0)
        if off + (p1 - p0) <= self._epoch_len(e):
            return self._order(e)[off : off + p1 - p0].copy()
        parts = []
        p = p0
        while p < p1:
            e, off = self._locate(p)
            take = min(self._epoch_len(e) - off, p1 - p)
            parts.append(self._order(e)[off : off + take])
            p += take
        return np.concatenate(parts)

    def padding(self, b: int) -> np.ndarray | None:
        if self._pad is None:
            return None
        p0, p1 = self._positions(b)
        out = np.empty(p1 - p0, bool)
        p = p0
        while p < p1:
            e, off = self._locate(p)
            take = min(self._epoch_len(e) - off, p1 - p)
            out[p - p0 : p - p0 + take] = self._pad_of(e)[off : off + take]
            p += take
        return out

    def span(self, b: int, k: int) -> tuple | None:
        if not self.spans:
            return None
        bs = self.batch_size
        assert bs is not None
        e, off = self._locate(b * bs)
        k = min(k, (self._epoch_len(e) - off) // bs)
        if k < 2:
            return None
        return self._order(e)[off : off + k * bs].copy(), k

    def _identity(self) -> dict:
        fp = dict(self._identity_fields)
        fp.setdefault("length", self._items * self._unit)
        return fp

    def _geometry(self) -> dict:
        return {"items": self._items, "unit": self._unit, "repeats": -1 if self._repeats is None else self._repeats}

    def reseeded(self, key: _rng.SeedKey) -> FlatPlan:
        return self._with(dataclasses.replace(self.options, shuffle=key))

    def _with(self, options: PlanOptions, start: Any = None, cuts: Any = None, consumed: Any = None) -> FlatPlan:
        """Return this plan with other options (and, given ``start``, resumed elastically; see :mod:`elastic`)."""
        kw: dict[str, Any] = dict(unit=self._unit, identity=self._identity_fields, legacy_surplus=self.legacy_surplus)
        bs = self.batch_size or 1
        if start is None:
            return FlatPlan(self._draw, self._items, bs, self._repeats, options, **kw)
        from batchup.samplers.elastic import ElasticFlatPlan  # imported here: it builds on this module

        return ElasticFlatPlan(
            self._draw, self._items, bs, self._repeats, options, start=start, cuts=cuts, consumed=consumed, **kw
        )

    def restore(self, fingerprint: Any, position: Any, where: str) -> tuple:
        """Return ``(plan, position)`` for a checkpoint; a checkpoint from another number of ranks resumes elastically.

        When the checkpoint differs from this plan only in its shard (and in
        earlier resumes), the rest of its epoch is split between this plan's
        ranks (see :mod:`batchup.samplers.elastic`); otherwise it must match.

        Parameters
        ----------
        fingerprint : dict
            The ``"plan"`` field of the state.
        position : int
            The ``"position"`` field of the state.
        where : str
            The restoring iterator's name, for the messages.

        Returns
        -------
        tuple of (BatchPlan, int)
            The plan to walk from now on (an ``ElasticFlatPlan`` after a change
            of ranks) and the position in it.

        Raises
        ------
        ValueError
            If the state belongs to another plan or the position does not fit.
        """
        if self.random_access and isinstance(fingerprint, Mapping):
            mine = self.fingerprint()
            differ = {k for k in set(mine) | set(fingerprint) if _norm(mine.get(k)) != _norm(fingerprint.get(k))}
            if differ and differ <= {"shard", "resume"}:
                from batchup.samplers.elastic import resume_on  # imported here: it builds on this module

                return resume_on(self, fingerprint, position)
        return super().restore(fingerprint, position, where)

    def iterator(self) -> Any:
        if self.random_access:
            return super().iterator()
        # Imported here: the drawn cursor builds on this module.
        from batchup.samplers._drawn import DrawnIndexBatchIterator

        return DrawnIndexBatchIterator(self)
