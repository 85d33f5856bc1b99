"""EpochStream: one rank's batches, epoch by epoch — the framework-free core of every adapter.

An adapter shows a batchup source to a framework as "epochs of batches".
Epoch ``e`` through any adapter is exactly ``source.batch_iterator(batch_size,
shuffle=seed, epoch=e, ...)``: for random-access sources the stream asks the
source's plan for that epoch, so the Keras ``PyDataset`` (item ``i``), the
torch workers (every ``W``-th batch) and tf.data compute the same batches
without talking to each other, and fetch them with
``source.fetch_batch(indices, batch_number)`` like the serial iterator.
Sources that are not random access are iterated in full, and each worker
keeps its share.
"""
from __future__ import annotations

import threading
from typing import Any, Iterator

import numpy as np

from batchup import _checks, _rng
from batchup._typing import PlannedSource, is_planned
from batchup.adapters import _common
from batchup.samplers.plan import BatchPlan, PlanOptions, SeedRequiredError

__all__ = ["EpochStream"]


class EpochStream:
    """One rank's batches of a source, epoch by epoch, with random access where the source has it.

    Parameters
    ----------
    source : AbstractDataSource or list of arrays
        Random-access sources are planned and fetched batch by batch; other
        sources are iterated in full by every worker, which keeps its share
        (correct, but each worker pays for every batch).
    batch_size : int or None
        Samples per batch (``None`` when the sampler sets it).
    shuffle : None, int, bool, RandomState or Generator, default None
        ``None`` keeps the order; an int seeds epoch ``e``'s order exactly as
        ``batch_iterator(shuffle=seed, epoch=e)`` does; ``True`` or an RNG
        object picks an int seed once, here, so every copy of the stream (in
        worker processes) agrees. Rank sharding needs an int seed: ranks build
        streams of their own.
    drop_last : bool, default False
        Leave out a final short batch.
    shard : None, (rank, num_shards) or ShardSpec
        This rank's shard of every epoch.
    structure : nested tuple/dict of int, optional
        Rearrange the flat batch tuple (each int is a position in it).

    Raises
    ------
    TypeError
        For a ``drop_last`` that is not a bool, or a ``shuffle``/``shard`` of the wrong kind.
    ValueError
        For rank sharding of a source that is not random access, or an
        impossible plan (no batch on this rank).
    SeedRequiredError
        (a ``ValueError``) for rank sharding with ``shuffle=True`` or an RNG
        object: each rank would pick a seed of its own and the ranks' parts
        would overlap, so sharding needs an int seed, as in the core.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> stream = EpochStream(ArrayDataSource([np.arange(7)]), 2)
    >>> len(stream), [b[0].tolist() for b in stream.batches(epoch=0, worker=1, num_workers=2)]
    (4, [[2, 3], [6]])
    """

    def __init__(
        self,
        source: Any,
        batch_size: Any,
        *,
        shuffle: Any = None,
        drop_last: bool = False,
        shard: Any = None,
        structure: Any = None,
    ) -> None:
        self.source = _common.as_source(source)
        self.batch_size = batch_size
        self._options = PlanOptions.make(None, drop_last, shard, 0)
        self.drop_last = self._options.drop_last
        self.shard = self._options.shard
        several_ranks = self.shard is not None and self.shard.num_shards > 1
        if several_ranks and _rng.resolve_shuffle(shuffle) is not None and not _checks.is_int(shuffle):
            # Each rank would draw a seed of its own from its RNG (or from OS entropy for
            # True), and the ranks' parts would overlap; the core refuses this too.
            raise SeedRequiredError(
                "sharding needs every rank to draw the same order, so shuffle must be an int seed shared "
                f"across ranks (shuffle=<int>); got {shuffle!r}, from which each rank would pick its own seed"
            )
        self.seed = _common.resolve_seed(shuffle)
        self.structure = _common.check_structure(structure)
        self.random_access = self.source.is_random_access
        if self.shard is not None and not self.random_access:
            raise ValueError(
                f"rank sharding needs a random-access source (equal batch counts per rank), got "
                f"{type(self.source).__name__} with shard={shard!r}"
            )
        self._lock = threading.Lock()
        self._plan: tuple = (-1, None)
        # Plan epoch 0 now: bad arguments fail here, not inside the framework's loop.
        self._length = self._measure()

    # -- pickling (worker processes) ------------------------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_plan"] = (-1, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def fingerprint(self) -> dict:
        """Return what a checkpoint of this stream must match: seed, batch size, options, source.

        Returns
        -------
        dict
            ``seed``, ``batch_size``, ``drop_last``, ``shard`` (as JSON) and the
            source's :meth:`~batchup.sources.AbstractDataSource.identity`.
        """
        return {
            "seed": self.seed, "batch_size": self.batch_size, "drop_last": self.drop_last,
            "shard": None if self.shard is None else self.shard.to_json(), "source": self.source.identity(),
        }

    # -- plans ----------------------------------------------------------------------------
    def options(self, epoch: int) -> dict:
        """Return the keyword arguments of ``batch_iterator`` that give epoch ``epoch`` (only those set).

        Parameters
        ----------
        epoch : int
            The epoch number.

        Returns
        -------
        dict
            Some of ``shuffle``, ``drop_last``, ``shard`` and ``epoch``: those
            that differ from ``batch_iterator``'s defaults.
        """
        kw: dict = {}
        if self.seed is not None:
            kw["shuffle"] = self.seed
        if self.drop_last:
            kw["drop_last"] = True
        if self.shard is not None:
            kw["shard"] = self.shard
        if epoch:
            kw["epoch"] = epoch
        return kw

    def plan(self, epoch: int) -> BatchPlan:
        """Return the plan of epoch ``epoch`` (random-access sources), computed once per epoch.

        Parameters
        ----------
        epoch : int
            The epoch number.

        Returns
        -------
        BatchPlan
            Which indices each batch of the epoch holds on this rank; the last
            epoch's plan is cached, so the workers of one epoch share it.
        """
        cached_epoch, plan = self._plan
        if cached_epoch == epoch:
            return plan
        with self._lock:
            cached_epoch, plan = self._plan
            if cached_epoch != epoch:
                key = None if self.seed is None else _rng.SeedKey(self.seed)
                options = PlanOptions(key, self.drop_last, self.shard, epoch)
                plan = self._planned()._plan(self.batch_size, options)
                self._plan = (epoch, plan)
        return plan

    def _planned(self) -> PlannedSource:
        """Return the source as a random-access source (planned and fetched batch by batch)."""
        source = self.source
        if not is_planned(source):
            raise TypeError(f"{type(source).__name__} is not random access: it has no plan to ask")
        return source

    def _measure(self) -> int | None:
        if self.random_access:
            plan = self.plan(0)
            if plan.num_batches is None and plan.num_samples != np.inf and not plan.random_access:
                return None
            return plan.num_batches
        n = self.source.num_batches(self.batch_size, **self.options(0))
        return None if n is None or n == np.inf else int(n)

    def __len__(self) -> int:
        """Return the number of batches of epoch 0 (see :meth:`length` for another epoch)."""
        if self._length is None:
            raise TypeError("the number of batches of this source is unknown or infinite")
        return self._length

    def length(self, epoch: int) -> int:
        """Return the number of batches of epoch ``epoch`` on this rank.

        It can differ between epochs: a non-stratified choice source ends
        at the first member that runs out, which depends on the epoch's order.

        Parameters
        ----------
        epoch : int
            The epoch number. For a source that is not random access the
            count of epoch 0 is returned for every epoch (it is not planned).

        Returns
        -------
        int
            How many batches this rank gets in that epoch (after sharding and
            ``drop_last``); for epoch 0 this is ``len(stream)``.

        Raises
        ------
        TypeError
            If the number is unknown or infinite.
        """
        if not self.random_access or epoch == 0:
            return len(self)
        n = self.plan(epoch).num_batches
        if n is None:
            raise TypeError("the number of batches of this source is unknown or infinite")
        return n

    @property
    def fixed_length(self) -> bool:
        """Whether every epoch has the same number of batches (see :attr:`BatchPlan.fixed_length`)."""
        return self.plan(0).fixed_length if self.random_access else True

    @property
    def endless(self) -> bool:
        """Whether an epoch never ends (``repeats=-1`` or a weighted stream)."""
        if self.random_access:
            return self.plan(0).num_samples == np.inf
        return self.source.num_batches(self.batch_size, **self.options(0)) == np.inf

    # -- batches --------------------------------------------------------------------------
    def batch(self, epoch: int, index: int) -> Any:
        """Return batch ``index`` of epoch ``epoch`` (random-access sources), arranged by ``structure``.

        Parameters
        ----------
        epoch : int
            The epoch number.
        index : int
            The batch's position in this rank's share of the epoch, from 0.

        Returns
        -------
        tuple or nested structure of arrays
            The batch as the source's ``fetch_batch`` returns it, rearranged by
            ``structure`` if one was given.
        """
        plan = self.plan(epoch)
        batch = self._planned().fetch_batch(plan.indices(index), plan.batch_number(index))
        return _common.apply_structure(batch, self.structure)

    def batches(self, epoch: int, worker: int = 0, num_workers: int = 1, start: int = 0) -> Iterator:
        """Yield the batches of ``epoch`` at positions ``start + worker, start + worker + num_workers, ...``.

        Parameters
        ----------
        epoch : int
            The epoch number.
        worker : int, default 0
            This worker's number, ``0 <= worker < num_workers``.
        num_workers : int, default 1
            How many workers share the epoch (every ``num_workers``-th batch is this worker's).
        start : int, default 0
            The first position of the epoch to consider (batches before it were
            consumed before a checkpoint).

        Yields
        ------
        tuple or nested structure of arrays
            This worker's batches in order, arranged by ``structure``.
        """
        if self.random_access:
            plan = self.plan(epoch)
            if plan.random_access:
                n = plan.num_batches
                b = start + worker
                while n is None or b < n:
                    yield self.batch(epoch, b)
                    b += num_workers
                return
            its: Any = _common.strided(plan.iterator(), start + worker, num_workers)
            for k, indices in its:
                batch = self._planned().fetch_batch(indices, plan.batch_number(k))
                yield _common.apply_structure(batch, self.structure)
            return
        it = self.source.batch_iterator(self.batch_size, **self.options(epoch))
        for _, batch in _common.strided(it, start + worker, num_workers):
            yield _common.apply_structure(batch, self.structure)
