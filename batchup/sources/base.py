"""The data source contract: reusable configuration that makes batch iterators.

A data source holds no cursor. ``batch_iterator`` returns a fresh iterator
object that records the position (and can save it with ``state_dict``).
Random-access sources split that work in two, and every driver — the
serial iterator, the worker pools, the framework adapters — does the same:

* :meth:`RandomAccessDataSource.plan` answers *which* samples form batch
  ``b`` (a :class:`~batchup.samplers.plan.BatchPlan`, asked of the sampler);
* :meth:`RandomAccessDataSource.fetch_batch` fetches those samples, given
  the batch's number (from which a seeded ``map`` derives its generator).

Because every driver asks the same plan and fetches the same way, they all
yield the same batches.
"""
from __future__ import annotations

from time import perf_counter as _profile_clock
from typing import Any, Callable, Mapping

import numpy as np

from batchup import _profile
from batchup._checks import index_array, repeats_value
from batchup._iterator import WrappingIterator, check_state
from batchup.samplers import AbstractSampler, StandardSampler, SubsetSampler, num_batches
from batchup.samplers.plan import BatchPlan, PlanOptions, SeedRequiredError, plan_options

__all__ = ["AbstractDataSource", "BatchIterator", "RandomAccessBatchIterator", "RandomAccessDataSource", "counting_plan"]


class AbstractDataSource:
    """Base class of data sources.

    ``num_samples`` and ``batch_iterator`` raise ``NotImplementedError``;
    ``map`` and the ``batch_map_*`` helpers work for every subclass.
    """

    @property
    def is_random_access(self) -> bool:
        """Whether the source supports ``batch_indices_iterator`` and ``samples_by_indices``."""
        return False

    def num_samples(self, **kwargs: Any) -> Any:
        """Return the number of samples one iteration yields: int, ``np.inf`` or ``None``.

        Parameters
        ----------
        **kwargs
            The iteration options of :meth:`batch_iterator` (other than the
            batch size) that change the count, such as ``shard``.

        Returns
        -------
        int, float or None
            An int; ``np.inf`` for an endless source (``repeats=-1``, a
            weighted stream); ``None`` when the source cannot know (an
            iterator or a callable without a length).
        """
        raise NotImplementedError("num_samples is abstract in AbstractDataSource")

    def identity(self) -> dict:
        """Return what identifies this source in checkpoints (JSON values).

        A checkpoint restores only into an iterator whose source has the same
        identity, so a state is never applied to different data.

        Returns
        -------
        dict
            The class name here; subclasses add what tells two instances
            apart (lengths, seeds, the identities of wrapped sources).
        """
        return {"source": type(self).__name__}

    def batch_iterator(self, batch_size: int, **kwargs: Any) -> Any:
        """Return an iterator over mini-batches.

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        **kwargs
            The subclass's iteration options; random-access sources take
            ``shuffle``, ``drop_last``, ``shard`` and ``epoch`` (see
            :meth:`RandomAccessDataSource.batch_iterator`). Unknown keywords
            raise ``TypeError``.

        Returns
        -------
        iterator
            Yields batches (usually a tuple of arrays, one per array of the
            source); most iterators also have ``len()``, ``remaining()`` and
            ``state_dict()`` / ``load_state_dict()``.
        """
        raise NotImplementedError("batch_iterator is abstract in AbstractDataSource")

    def map(self, fn: Callable, *, seed: Any = None) -> Any:
        """Return a source whose batches are ``fn(*batch)`` (see :class:`MapDataSource`).

        Parameters
        ----------
        fn : callable
            Called with each batch's arrays as positional arguments; what it
            returns is the new batch.
        seed : int, optional
            Keyword-only. When given, ``fn`` also receives ``rng=``, a
            ``numpy.random.Generator`` derived from ``(seed, batch number)``,
            so random augmentation is reproducible in any worker or adapter.

        Returns
        -------
        MapDataSource
            Random access when this source is, so it can be shuffled,
            sharded and prefetched like it.

        Examples
        --------
        >>> import numpy as np
        >>> from batchup.sources import ArrayDataSource
        >>> doubled = ArrayDataSource([np.arange(4)]).map(lambda x: (x * 2,))
        >>> [b[0].tolist() for b in doubled.batch_iterator(3)]
        [[0, 2, 4], [6]]
        """
        # Imported here: mapped.py builds on this module (grain's pattern).
        from batchup.sources.mapped import MapDataSource

        return MapDataSource(self, fn, seed=seed)

    def prefetch(
        self,
        num_workers: int | str = 2,
        *,
        buffer_size: int | None = None,
        kind: str | None = None,
        start_method: str | None = None,
        timeout: Any = None,
        memory_budget: int | None = None,
    ) -> Any:
        """Return a source that prepares this source's batches in background workers.

        Parameters
        ----------
        num_workers : int or 'auto', default 2
            Worker processes (or threads); ``0`` prepares every batch in the
            calling thread, the serial twin that gives identical batches.
            ``'auto'`` chooses the calling thread, threads or processes, their
            number and the buffer by measuring the first batches (see
            :mod:`batchup.parallel.autotune`; the choice is ``par.choice``).
        buffer_size : int, optional
            Keyword-only: batches prepared ahead (default ``max(4, 2 * num_workers)``).
        kind : {'process', 'thread'}, optional
            Keyword-only: processes (the default) for Python-heavy preparation,
            threads for I/O or NumPy work that releases the GIL. With
            ``'auto'``, the only kind tried besides the calling thread.
        start_method : {'fork', 'forkserver', 'spawn'}, optional
            Keyword-only, for processes. By default ``'fork'`` where it is
            safe (no other Python threads running), else ``'forkserver'``;
            see the guide page on parallel processing. Checked for every
            ``kind`` and worker count.
        timeout : float, optional
            Keyword-only: seconds to wait for one batch before raising
            :class:`~batchup.parallel.BatchTimeoutError`.
        memory_budget : int, optional
            Keyword-only, with ``'auto'`` only: bytes the batches prepared
            ahead may take (default: 10 % of the memory available, at most 2 GiB).

        Returns
        -------
        batchup.parallel.ParallelDataSource
            Its ``batch_iterator`` takes the same arguments as this source's
            and yields the same batches in the same order. It owns its pool:
            call ``close()`` or use it in a ``with`` block.

        Raises
        ------
        TypeError
            If this source is not random access.

        Examples
        --------
        >>> import numpy as np
        >>> from batchup.sources import ArrayDataSource
        >>> ds = ArrayDataSource([np.arange(8)])
        >>> with ds.prefetch(num_workers=2, kind="thread") as par:
        ...     print([b[0].tolist() for b in par.batch_iterator(3)])
        [[0, 1, 2], [3, 4, 5], [6, 7]]

        Shuffled batches equal the serial ones for the same ``shuffle``:

        >>> serial = [b[0].tolist() for b in ds.batch_iterator(3, shuffle=7)]
        >>> with ds.prefetch(num_workers=2) as par:
        ...     print([b[0].tolist() for b in par.batch_iterator(3, shuffle=7)] == serial)
        True
        """
        # Imported here: parallel builds on sources (the one permitted upward reference).
        from batchup.parallel.prefetch import prefetch

        return prefetch(
            self, num_workers, buffer_size=buffer_size, kind=kind, start_method=start_method, timeout=timeout,
            memory_budget=memory_budget,
        )

    def num_batches(self, batch_size: int, **kwargs: Any) -> Any:
        """Return the number of batches ``batch_iterator(batch_size, **kwargs)`` yields.

        An int, ``np.inf`` for an endless source or ``None`` when unknown.
        Random-access sources ask their plan (a weighted sampler, which
        cannot go in order, is counted without a ``shuffle``, as its count
        does not depend on the seed); others count from
        ``num_samples(**kwargs)``.

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        **kwargs
            The iteration options of :meth:`batch_iterator` (``shuffle``,
            ``drop_last``, ``shard``, ``epoch``), so the count is that of the
            same iteration.

        Returns
        -------
        int, float or None
            An int; ``np.inf`` for an endless source; ``None`` when unknown.
        """
        if self.is_random_access:
            options = plan_options(f"{type(self).__name__}.num_batches", kwargs)
            return counting_plan(self, batch_size, options).batch_count
        n = self.num_samples(**kwargs)
        if n is None or n == np.inf:
            return n
        if kwargs.get("drop_last"):
            return int(n) // batch_size
        return num_batches(int(n), batch_size)

    def _batch_count(self, batch_size: int, n_batches: Any, kwargs: dict) -> Any:
        if n_batches is not None:
            return n_batches
        n = self.num_batches(batch_size, **kwargs)
        if n == np.inf:
            raise ValueError(
                "cannot apply batch_map_* to an infinite data source without n_batches; "
                "pass n_batches=<number of batches>"
            )
        return n

    def batch_map_concat(
        self,
        func: Callable,
        batch_size: int,
        progress_iter_func: Any = None,
        n_batches: Any = None,
        prepend_args: Any = None,
        *,
        progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Apply ``func`` to every batch and concatenate the results per output.

        The method form of :func:`batchup.pipeline.batch_map_concat` (BatchUp
        0.2's API): it iterates ``batch_iterator(batch_size, **kwargs)``.

        Parameters
        ----------
        func : callable
            Called as ``func(*prepend_args, *batch)``; returns ``None``
            (skipped), an array or a tuple of arrays with one row per sample.
        batch_size : int
            Samples per batch.
        progress_iter_func : callable, optional
            A tqdm-like progress wrapper, called as ``f(it, total=..., leave=False)``.
        n_batches : int, optional
            Process at most this many batches; required for an endless source.
        prepend_args : tuple, optional
            Arguments passed before the batch's arrays.
        progress : bool or str, default False
            Keyword-only: show a tqdm bar counting batches.
        **kwargs
            Iteration options for :meth:`batch_iterator` and
            :meth:`num_batches` (``shuffle``, ``drop_last``, ...).

        Returns
        -------
        tuple of numpy.ndarray or None
            One concatenated array per output of ``func``; ``None`` if no
            batch produced a result.

        Raises
        ------
        ValueError
            For an endless source without ``n_batches``.
        """
        # Imported here: pipeline consumes sources and may not be imported by them.
        from batchup.pipeline.batch_map import batch_map_concat

        n_batches = self._batch_count(batch_size, n_batches, kwargs)
        it = self.batch_iterator(batch_size, **kwargs)
        return batch_map_concat(
            func, it, progress_iter_func, n_batches=n_batches, prepend_args=prepend_args, progress=progress
        )

    def batch_map_mean(
        self,
        func: Callable,
        batch_size: int,
        progress_iter_func: Any = None,
        sum_axis: Any = None,
        n_batches: Any = None,
        prepend_args: Any = None,
        *,
        progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Apply ``func`` to every batch and return the per-sample mean of its results.

        The method form of :func:`batchup.pipeline.batch_map_mean` (BatchUp
        0.2's API): it iterates ``batch_iterator(batch_size, **kwargs)``.

        Parameters
        ----------
        func : callable
            Called as ``func(*prepend_args, *batch)``; returns ``None``, a
            number, an array or a tuple/list of them: sums over the batch,
            unless ``sum_axis`` is given.
        batch_size : int
            Samples per batch.
        progress_iter_func : callable, optional
            A tqdm-like progress wrapper.
        sum_axis : int or tuple of int, optional
            Sum each returned array over these axes first, so ``func`` may
            return per-sample values.
        n_batches : int, optional
            Process at most this many batches; required for an endless source.
        prepend_args : tuple, optional
            Arguments passed before the batch's arrays.
        progress : bool or str, default False
            Keyword-only: show a tqdm bar counting batches.
        **kwargs
            Iteration options for :meth:`batch_iterator` and
            :meth:`num_batches` (``shuffle``, ``drop_last``, ...).

        Returns
        -------
        tuple or None
            ``float64`` means (scalars or arrays), one per output of ``func``;
            ``None`` if no batch produced a result.

        Raises
        ------
        ValueError
            For an endless source without ``n_batches``.
        """
        from batchup.pipeline.batch_map import batch_map_mean

        n_batches = self._batch_count(batch_size, n_batches, kwargs)
        it = self.batch_iterator(batch_size, **kwargs)
        return batch_map_mean(
            func,
            it,
            progress_iter_func,
            sum_axis=sum_axis,
            n_batches=n_batches,
            prepend_args=prepend_args,
            progress=progress,
        )


class RandomAccessDataSource(AbstractDataSource):
    """A source whose samples can be fetched by index, driven by a sampler.

    Parameters
    ----------
    length : int
        Number of samples (ignored when ``sampler`` is given).
    indices : 1-D array-like of int, optional
        Draw only these samples (a :class:`~batchup.samplers.SubsetSampler`).
    repeats : int, default 1
        Epochs per iteration; ``-1`` for forever.
    sampler : AbstractSampler, optional
        Use this sampler instead of building one; excludes ``indices`` and
        ``repeats != 1``.
    include_indices : bool, default False
        Put the absolute sample indices first in every batch.

    Raises
    ------
    ValueError
        For ``sampler`` together with ``repeats != 1`` or with ``indices``, or
        an invalid ``repeats``.
    TypeError
        For an ``include_indices`` that is not a bool.

    Notes
    -----
    Subclasses implement :meth:`samples_by_indices_nomapping`. Every
    iteration option — ``shuffle``, ``drop_last``, ``shard`` and ``epoch`` —
    is interpreted by the sampler's plan (:meth:`plan`); an unknown keyword
    argument raises ``TypeError``.
    """

    def __init__(
        self,
        length: int,
        indices: Any = None,
        repeats: int = 1,
        sampler: AbstractSampler | None = None,
        include_indices: bool = False,
    ) -> None:
        if sampler is not None:
            if repeats != 1:
                raise ValueError(f"repeats must be 1 when a sampler is given, got repeats={repeats!r}")
            if indices is not None:
                raise ValueError("pass either indices or sampler, not both")
        else:
            repeats_value(repeats)
        if not isinstance(include_indices, (bool, np.bool_)):
            raise TypeError(f"include_indices must be True or False, got {include_indices!r}")
        self.include_indices = bool(include_indices)
        if sampler is None:
            if indices is None:
                sampler = StandardSampler(length, repeats=repeats)
            else:
                sampler = SubsetSampler(index_array("indices", indices, length), repeats=repeats)
        self.sampler = sampler
        self._length = length

    @property
    def is_random_access(self) -> bool:
        return True

    # -- planning ---------------------------------------------------------------------
    def plan(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> BatchPlan:
        """Return the plan of ``batch_iterator(batch_size, shuffle, **kwargs)``: which indices form each batch.

        Parameters
        ----------
        batch_size : int or None
            Samples per batch (``None`` when the sampler sets it).
        shuffle : bool, int, RandomState or Generator, optional
            As for :meth:`batch_iterator`.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only, as for
            :meth:`batch_iterator`.

        Returns
        -------
        BatchPlan
            ``len(plan)`` batches; ``plan.indices(b)`` (random access with an
            int seed or in order); ``plan.iterator()`` walks it.

        Raises
        ------
        TypeError
            For an unknown keyword argument.
        """
        return self._plan(batch_size, plan_options(f"{type(self).__name__}.plan", kwargs, shuffle))

    def _plan(self, batch_size: Any, options: PlanOptions) -> BatchPlan:
        """Return the plan for already validated options (composite sources call this for members)."""
        o = options
        return self.sampler.plan(batch_size, o.shuffle, drop_last=o.drop_last, shard=o.shard, epoch=o.epoch)

    # -- fetching ---------------------------------------------------------------------
    def samples_by_indices_nomapping(self, indices: Any) -> Any:
        """Return the samples at absolute ``indices`` (abstract here).

        Parameters
        ----------
        indices : numpy.ndarray of int
            Sample positions in the source's own arrays (not mapped through
            the sampler), 1-D, in the order wanted.

        Returns
        -------
        tuple of arrays
            One array per array of the source, each with ``len(indices)``
            rows (the absolute indices first with ``include_indices``).
        """
        raise NotImplementedError("samples_by_indices_nomapping is abstract in RandomAccessDataSource")

    def samples_by_indices(self, indices: Any) -> Any:
        """Return the samples at ``indices`` given as positions in the sampler's index space.

        For a subset source, position ``i`` is the ``i``-th index of the
        subset; for a plain source it is sample ``i``.

        Parameters
        ----------
        indices : numpy.ndarray of int
            Positions in the sampler's index space, 1-D.

        Returns
        -------
        tuple of arrays
            As :meth:`samples_by_indices_nomapping` returns for the mapped indices.
        """
        return self.samples_by_indices_nomapping(self.sampler.map_indices(indices))

    def fetch_batch(self, indices: Any, batch_number: int) -> Any:
        """Return the batch at absolute ``indices``; ``batch_number`` is the batch's number in its plan.

        Every driver fetches through this method. Sources built from other
        sources pass ``batch_number`` on; a seeded ``map`` derives its
        generator from it, so a batch is the same whichever thread, process
        or framework makes it. The default ignores the number.

        Parameters
        ----------
        indices : numpy.ndarray of int
            Absolute sample indices, as the plan gives them.
        batch_number : int
            The batch's number in its plan (``epoch * len(plan) + b`` for
            batch ``b`` of pass ``epoch``).

        Returns
        -------
        tuple of arrays
            The batch, as :meth:`batch_iterator` yields it.
        """
        return self.samples_by_indices_nomapping(indices)

    def span_batches(self, batch_size: int | None) -> int:
        """Return how many consecutive batches :meth:`fetch_span` should gather at once (1: one at a time).

        Parameters
        ----------
        batch_size : int or None
            The batch size being iterated.

        Returns
        -------
        int
            ``1`` here; sources for which one large gather is cheaper than
            several small ones return more.
        """
        return 1

    def fetch_span(self, indices: Any, count: int, first_number: int) -> list:
        """Return ``count`` batches whose indices were concatenated into ``indices`` (equal sizes).

        The default fetches them one by one; array sources gather them with
        one NumPy call.

        Parameters
        ----------
        indices : numpy.ndarray of int
            The absolute indices of ``count`` consecutive batches of equal
            size, one after the other.
        count : int
            The number of batches.
        first_number : int
            The batch number of the first of them (the others follow on).

        Returns
        -------
        list
            ``count`` batches, equal to ``fetch_batch`` of each part.
        """
        size = len(indices) // count
        return [
            self.fetch_batch(indices[i * size : (i + 1) * size], first_number + i) for i in range(count)
        ]

    # -- counting ---------------------------------------------------------------------
    def num_samples(self, **kwargs: Any) -> Any:
        """Return the number of samples one iteration yields: an int, ``np.inf`` or ``None``.

        Parameters
        ----------
        **kwargs
            The iteration options of :meth:`batch_iterator` (``shuffle``,
            ``drop_last``, ``shard``, ``epoch``); with ``shard`` the count is
            this rank's.

        Returns
        -------
        int, float or None
            An int; ``np.inf`` with ``repeats=-1`` or an endless weighted
            sampler; ``None`` when the sampler cannot say.

        Raises
        ------
        TypeError
            For an unknown keyword argument.
        """
        options = plan_options(f"{type(self).__name__}.num_samples", kwargs)
        n = self.sampler.num_indices_generated()
        if options.shard is None or n is None or n == np.inf:
            return n
        bs = getattr(self.sampler, "batch_size", 1)
        return counting_plan(self, bs, options).num_samples

    # -- iterating --------------------------------------------------------------------
    def batch_indices_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> Any:
        """Return an iterator of absolute index batches (1-D int arrays).

        The indices :meth:`batch_iterator` fetches, for code that fetches
        samples itself.

        Parameters
        ----------
        batch_size : int or None
            Samples per batch (``None`` only for samplers that set it).
        shuffle : bool, int, RandomState or Generator, optional
            As for :meth:`batch_iterator`.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only, as for
            :meth:`batch_iterator`.

        Returns
        -------
        IndexBatchIterator
            Yields 1-D ``intp`` arrays of absolute sample indices; resumable
            with ``state_dict()`` / ``load_state_dict()``.

        Raises
        ------
        TypeError
            For an unknown keyword argument or a ``drop_last`` that is not a bool.
        """
        return self.plan(batch_size, shuffle, **kwargs).iterator()

    def batch_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> BatchIterator:
        """Return an iterator over mini-batches of the source's samples.

        Parameters
        ----------
        batch_size : int or None
            Samples per batch (``None`` only for samplers that set it, such as
            :class:`~batchup.samplers.BalancedSampler`).
        shuffle : bool, int, RandomState or Generator, optional
            ``None``/``False`` in order; ``True`` the global NumPy RNG; an
            int seeds a reproducible, resumable order (epoch ``e`` from
            ``(seed, e)``); an RNG object is drawn from, as BatchUp 0.2 does.
        **kwargs
            Keyword-only iteration options:

            drop_last : bool, default False
                Drop a final short batch.
            shard : (rank, num_shards) or ShardSpec, optional
                Take only this rank's disjoint part of every epoch; every rank
                gets the same number of batches. Shuffling must then use an
                int seed that all ranks share. See
                :class:`~batchup.samplers.ShardSpec`.
            epoch : int, default 0
                Which pass over the data. With an int seed, pass ``e`` has its
                own order (with ``repeats=1``, epoch ``e`` is drawn from
                ``(seed, e)``), and a seeded ``map`` numbers its batches on
                from the earlier passes.

        Returns
        -------
        BatchIterator
            Yields a tuple of arrays per batch (the sample indices first with
            ``include_indices``); has ``len()``, ``remaining()`` and
            ``state_dict()`` / ``load_state_dict()``.

        Raises
        ------
        TypeError
            For an unknown keyword argument or a ``drop_last`` that is not a bool.
        """
        plan = self._plan(batch_size, plan_options(f"{type(self).__name__}.batch_iterator", kwargs, shuffle))
        return BatchIterator(self, plan)


def counting_plan(source: Any, batch_size: Any, options: PlanOptions) -> BatchPlan:
    """Return a plan to count with.

    Counting needs no shared seed: a weighted sampler (which cannot go in
    order) or a sampler with a seed of its own drawn at random is counted
    with a fixed seed, on which its counts do not depend.

    Parameters
    ----------
    source : RandomAccessDataSource
        A random-access source (anything with ``_plan(batch_size, options)``,
        such as a choice or mixture source).
    batch_size : int or None
        Samples per batch (``None`` when the sampler sets it).
    options : PlanOptions
        The validated ``shuffle``, ``drop_last``, ``shard`` and ``epoch`` of
        the run to count (from :meth:`PlanOptions.make
        <batchup.samplers.PlanOptions.make>`).

    Returns
    -------
    BatchPlan
        The source's plan for ``options``, or, if that plan needs a seed it
        was not given (``NotImplementedError`` or ``SeedRequiredError``), its
        plan for the same options with the int seed 0. Read only its counts
        (``batch_count``, ``num_batches``, ``num_samples``): in the second
        case its batches are not the run's.
    """
    try:
        return source._plan(batch_size, options)
    except (NotImplementedError, SeedRequiredError):
        from batchup import _rng

        return source._plan(batch_size, PlanOptions(_rng.SeedKey(0), options.drop_last, options.shard, options.epoch))


class BatchIterator(WrappingIterator):
    """Walk a source's plan and fetch every batch: the serial iterator of random-access sources.

    Batch ``b`` is ``source.fetch_batch(plan.indices(b), plan.batch_number(b))``.
    When the source gathers several batches at once (:meth:`RandomAccessDataSource.span_batches`)
    and the plan can hand them out (whole batches inside one epoch), up to
    that many batches are fetched with one call and handed out one by one;
    the checkpoint still counts only the batches consumed. If that call
    fails, those batches are fetched one by one instead, so an error
    arrives after every batch before it, as with every other driver.

    The state is ``{"kind", "source": source.identity(), "inner": the plan
    cursor's state}``, so a checkpoint restores only into the same pipeline.

    Parameters
    ----------
    source : RandomAccessDataSource
        The source whose ``fetch_batch`` (or ``fetch_span``) makes the batches.
    plan : BatchPlan
        The plan to walk, from ``source.plan(...)``.
    """

    KIND = "batches"
    #: The stall report's recorder while profiled (:func:`batchup.profile`), else None.
    _rec: Any = None

    def __init__(self, source: Any, plan: BatchPlan) -> None:
        super().__init__(plan.iterator())
        self._rec = None
        self._source = source
        self._pending: list = []
        self._pos = 0
        self._group = source.span_batches(plan.batch_size) if plan.spans else 1
        self._take_span = getattr(self._inner, "take_span", None)
        #: Batches before this position are fetched one by one (after a span failed).
        self._single_until = 0

    @property
    def plan(self) -> BatchPlan:
        """The plan walked (after a restore, with the checkpoint's seed if the sampler drew its own)."""
        return self._inner.plan

    def __next__(self) -> Any:
        pending = self._pending
        if self._pos < len(pending):
            # A batch of a span already fetched. Profiled from right above (rec.direct), handing
            # it out is the profiler's time; with anything between, it is timed here.
            rec = self._rec
            if rec is not None and not rec.direct:
                return self._next_timed()
            batch = pending[self._pos]
            pending[self._pos] = None
            self._pos += 1
            return batch
        if self._rec is not None:
            return self._next_timed()
        cursor = self._inner
        b = cursor.position
        if self._group > 1 and self._take_span is not None and b >= self._single_until:
            span = self._take_span(self._group)
            if span is not None and self._fetch_span(cursor, b, span, cursor.plan.batch_number(b)):
                return self._pending[0]
        indices = next(cursor)
        return self._source.fetch_batch(indices, cursor.plan.batch_number(b))

    def _fetch_span(self, cursor: Any, b: int, span: tuple, number: int) -> bool:
        """Fetch the batches of ``span`` (taken at position ``b``) into the pending list; False if one failed.

        After a failure the cursor is back at ``b`` and those batches are
        fetched one by one, so that the batches before the failing one are
        delivered first, as every other driver does.
        """
        indices, count = span
        try:
            self._pending = self._source.fetch_span(indices, count, number)
        except Exception:
            self._pending = []
            cursor.position = b
            self._single_until = b + count
            return False
        self._pos = 1
        return True

    # -- profiling (batchup.profile): the same steps, timed -----------------------------
    def _attach_recorder(self, rec: Any) -> None:
        self._rec = rec
        rec.describe = lambda: {"kind": "serial"}

    def _next_timed(self) -> Any:
        # The steps of __next__, timed; map functions run in this thread add to rec.maps.
        rec, clock = self._rec, _profile_clock
        pending = self._pending
        if self._pos < len(pending):
            t0 = clock()
            batch = pending[self._pos]
            pending[self._pos] = None
            self._pos += 1
            rec.node += clock() - t0
            return batch
        t0 = clock()
        maps = rec.maps
        m0 = maps[0]
        outer_maps, _profile.LOCAL.maps = _profile.LOCAL.maps, maps
        try:
            cursor = self._inner
            b = cursor.position
            number = cursor.plan.batch_number(b)
            if self._group > 1 and self._take_span is not None and b >= self._single_until:
                span = self._take_span(self._group)
                if span is not None:
                    t1 = clock()
                    if self._fetch_span(cursor, b, span, number):
                        t2 = clock()
                        rec.serial(t1 - t0, t2 - t1, maps[0] - m0, t2 - t0)
                        return self._pending[0]
            try:
                indices = next(cursor)
            except StopIteration:
                rec.serial(clock() - t0, 0.0, 0.0, clock() - t0)
                raise
            t1 = clock()
            batch = self._source.fetch_batch(indices, number)
            t2 = clock()
            rec.serial(t1 - t0, t2 - t1, maps[0] - m0, t2 - t0)
            return batch
        finally:
            _profile.LOCAL.maps = outer_maps

    def _held(self) -> int:
        return len(self._pending) - self._pos

    def _inner_state(self) -> Any:
        held = self._held()
        return self._inner.state_dict(pending=held) if held else self._inner.state_dict()

    def _load_inner_state(self, state: Any) -> None:
        self._pending, self._pos, self._single_until = [], 0, 0
        self._inner.load_state_dict(state)

    def _own_state(self) -> dict:
        return {"source": self._source.identity()}

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        check_state(state, {"source": self._source.identity()}, type(self).__name__)


#: The name of BatchUp 0.2-era code for the serial iterator of random-access sources.
RandomAccessBatchIterator = BatchIterator
