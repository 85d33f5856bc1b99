"""ParallelDataSource: prepare a random-access source's batches in a worker pool.

The source's plan is walked in the calling thread: the index batches are
drawn there (so shuffling uses the caller's RNG exactly as the serial
iterator would) and each becomes a task that runs
``source.fetch_batch(indices, batch_number)`` in a worker. Results come back
in order, so the batches are those of ``ds.batch_iterator(...)`` for the
same arguments, whatever the number of workers, and a failure reaches the
caller after every batch the serial iterator would have delivered before it.
"""
from __future__ import annotations

import collections
import time
from typing import Any, Mapping

from batchup._iterator import WrappingIterator, check_state
from batchup._profile import LOCAL
from batchup.parallel import _worker
from batchup.parallel._start_method import check_start_method
from batchup.parallel.pool import AbstractWorkerPool, InlinePool, WorkerThreadPool, check_timeout
from batchup.parallel.work_stream import WorkStream, check_buffer_size
from batchup.samplers.plan import BatchPlan, plan_options
from batchup.sources.base import AbstractDataSource

__all__ = ["ParallelBatchIterator", "ParallelDataSource", "check_source", "prefetch"]


class ParallelDataSource(AbstractDataSource):
    """Prepare the batches of ``ds`` in ``pool``, keeping ``batch_buffer_size`` in flight.

    Parameters
    ----------
    ds : AbstractDataSource
        A random-access source (``ArrayDataSource``, a map or composite of
        them, ...). It is shared with the workers once
        (``pool.shared_constant(ds)``).
    batch_buffer_size : int
        Batches prepared ahead of the consumer.
    pool : AbstractWorkerPool
        The pool; several sources and streams may share one.
    timeout : float, optional
        Keyword-only: seconds to wait for one batch before raising
        :class:`~batchup.parallel.errors.BatchTimeoutError`.

    Raises
    ------
    TypeError
        If ``ds`` is not a data source, or is not random access.
    ValueError
        If ``batch_buffer_size < 1``.

    Notes
    -----
    Prefetching starts when :meth:`batch_iterator` is called. Workers of a
    process pool see ``ds`` as it was when the source was created (a
    snapshot); later changes to its arrays are not seen.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> from batchup.parallel import WorkerThreadPool
    >>> ds = ArrayDataSource([np.arange(10)])
    >>> serial = [b[0].tolist() for b in ds.batch_iterator(4, shuffle=0)]
    >>> with WorkerThreadPool(processes=2) as pool:
    ...     par = pool.parallel_data_source(ds, batch_buffer_size=4)
    ...     print([b[0].tolist() for b in par.batch_iterator(4)])
    ...     print([b[0].tolist() for b in par.batch_iterator(4, shuffle=0)] == serial)
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    True
    """

    #: How ``num_workers="auto"`` chose the pool (a :class:`~batchup.parallel.autotune.Choice`), else None.
    choice: Any = None

    def __init__(self, ds: Any, batch_buffer_size: int, pool: AbstractWorkerPool, *, timeout: Any = None,
                 _owns_pool: bool = False) -> None:
        check_source(ds)
        if not isinstance(pool, AbstractWorkerPool):
            raise TypeError(f"pool must be an AbstractWorkerPool, got {type(pool).__name__}")
        self.batch_buffer_size = check_buffer_size(batch_buffer_size, "batch_buffer_size")
        self.timeout = check_timeout(timeout)
        self.ds: Any = ds  # random access (checked above), not necessarily by inheritance
        self.pool = pool
        self._owns_pool = _owns_pool
        self.shared_ds = pool.shared_constant(ds)

    @property
    def is_random_access(self) -> bool:
        return False

    def num_samples(self, **kwargs: Any) -> Any:
        return self.ds.num_samples(**kwargs)

    def num_batches(self, batch_size: int, **kwargs: Any) -> Any:
        return self.ds.num_batches(batch_size, **kwargs)

    def identity(self) -> dict:
        return self.ds.identity()

    def plan(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> BatchPlan:
        """Return the wrapped source's plan (the batches prepared are exactly its batches).

        Parameters
        ----------
        batch_size : int or None
            Samples per batch.
        shuffle : bool, int, RandomState or Generator, optional
            As for the wrapped source's ``batch_iterator``.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only, as for the
            wrapped source's ``batch_iterator``.

        Returns
        -------
        BatchPlan
            ``ds.plan(batch_size, shuffle, **kwargs)``.
        """
        return self.ds.plan(batch_size, shuffle, **kwargs)

    def batch_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> ParallelBatchIterator:
        """Return an iterator over the batches of ``ds.batch_iterator(batch_size, shuffle, **kwargs)``.

        The workers start preparing batches at once. The arguments are those
        of the wrapped source's ``batch_iterator``; an unknown keyword
        argument raises ``TypeError``.

        Parameters
        ----------
        batch_size : int or None
            Samples per batch.
        shuffle : bool, int, RandomState or Generator, optional
            As for :meth:`batchup.sources.RandomAccessDataSource.batch_iterator`.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only, as for the
            wrapped source's ``batch_iterator``.

        Returns
        -------
        ParallelBatchIterator
            The same batches in the same order as the serial iterator, with
            ``len()``, ``remaining()`` and a state that restores into either.
            Call ``close()`` (or use ``with``) to cancel batches prepared
            ahead when stopping early.
        """
        plan = self.ds._plan(batch_size, plan_options("ParallelDataSource.batch_iterator", kwargs, shuffle))
        return ParallelBatchIterator(self, plan)

    def close(self) -> None:
        """Close the pool if this source created it (``ds.prefetch(...)``); idempotent."""
        if self._owns_pool:
            self.pool.close()

    def __enter__(self) -> ParallelDataSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_source(ds: Any) -> None:
    """Raise TypeError unless ``ds`` is a random-access data source.

    Parameters
    ----------
    ds : object
        The source a pool is asked to prefetch from.

    Raises
    ------
    TypeError
        If ``ds`` is not an :class:`~batchup.sources.AbstractDataSource`, or is
        one that cannot fetch a batch by its indices (an iterator source).
    """
    if not isinstance(ds, AbstractDataSource):
        raise TypeError(f"ds must be a data source (AbstractDataSource), got {type(ds).__name__}")
    if not ds.is_random_access:
        raise TypeError(
            f"ds must be random access to prepare batches in parallel, got {type(ds).__name__}; "
            "ArrayDataSource, and maps and composites of random-access sources, qualify"
        )


class _BatchTasks:
    """Walk the plan in the calling thread and turn every index batch into a fetch task.

    ``meta`` receives, for every task handed out, the padding mask of its
    batch and (for cursors that cannot be rewound by position) the cursor's
    state *before* that batch, so the consumer's position can be saved.
    """

    def __init__(self, cursor: Any, shared: Any, meta: collections.deque) -> None:
        self.cursor, self.shared, self.meta = cursor, shared, meta
        self.snapshots = not cursor.plan.random_access

    def __iter__(self) -> _BatchTasks:
        return self

    def __next__(self) -> tuple:
        cursor = self.cursor
        snap = cursor.state_dict() if self.snapshots else None
        b = cursor.position
        indices = next(cursor)
        self.meta.append((snap, cursor.last_padding))
        return (_worker.fetch_batch, (self.shared, indices, cursor.plan.batch_number(b)))


class _TimedBatchTasks(_BatchTasks):
    """The tasks of a profiled iterator: the time spent planning is added up, each task sends its timings."""

    def __init__(self, cursor: Any, shared: Any, meta: collections.deque) -> None:
        super().__init__(cursor, shared, meta)
        self.plan_seconds = 0.0

    def __next__(self) -> tuple:
        t0 = time.perf_counter()
        try:
            fn, args = super().__next__()
        finally:
            self.plan_seconds += time.perf_counter() - t0
        return (_worker.fetch_batch_timed, args)


class ParallelBatchIterator(WrappingIterator):
    """The iterator of a :class:`ParallelDataSource`: batches in order, resumable.

    ``state_dict()`` records the batches the *consumer* has received, not
    those the workers prepared ahead, in the same form as the serial
    iterator's state: a checkpoint taken here restores into
    ``ds.batch_iterator(...)`` and the other way round, with any worker count.

    Parameters
    ----------
    source : ParallelDataSource
        The source whose pool prepares the batches.
    plan : BatchPlan
        The plan of the wrapped source to walk.
    """

    KIND = "batches"
    #: The stall report's recorder while profiled (:func:`batchup.profile`), else None.
    _rec: Any = None

    def __init__(self, source: ParallelDataSource, plan: BatchPlan) -> None:
        super().__init__(plan.iterator())
        self._rec = None
        self._source = source
        self._meta: collections.deque = collections.deque()
        self._last_padding: Any = None
        self._stream: Any = None  # a WorkStream, or a stand-in while num_workers="auto" calibrates
        self._tasks: _BatchTasks = _BatchTasks(self._inner, None, self._meta)
        self._start()

    @property
    def plan(self) -> BatchPlan:
        """The plan walked."""
        return self._inner.plan

    def _start(self) -> None:
        src = self._source
        cls = _BatchTasks if self._rec is None else _TimedBatchTasks
        self._tasks = cls(self._inner, src.shared_ds, self._meta)
        if src.pool is None:  # num_workers="auto" before calibrating: calibrate at the first batch
            self._stream = src._calibration(self)
            return
        self._stream = self._new_stream()

    def _new_stream(self) -> WorkStream:
        src = self._source
        self._tasks.shared = src.shared_ds
        return WorkStream(
            src.pool, self._tasks, src.batch_buffer_size, timeout=src.timeout, _label="batch",
            _first_number=self._inner.position,
        )

    def __next__(self) -> Any:
        if self._stream is None:
            raise StopIteration
        if self._rec is not None:
            return self._next_timed()
        batch = self._stream._next()
        _, self._last_padding = self._meta.popleft()
        return batch

    # -- profiling (batchup.profile) ------------------------------------------------------------
    def _attach_recorder(self, rec: Any) -> None:
        self._rec = rec
        rec.describe = self._describe
        timed = _TimedBatchTasks(self._inner, self._tasks.shared, self._meta)
        self._tasks = timed
        stream = self._stream
        real = stream if isinstance(stream, WorkStream) else getattr(stream, "stream", None)
        if real is not None:
            real._tasks = timed  # from the next task on; those already submitted come back untimed

    def _describe(self) -> dict:
        src = self._source
        pool = src.pool
        return {
            "kind": "prefetch",
            "pool": _pool_kind(pool),
            "workers": 0 if pool is None else pool.num_workers,
            "buffer": src.batch_buffer_size,
            "choice": None if src.choice is None else src.choice.as_dict(),
        }

    def _next_timed(self) -> Any:
        clock = time.perf_counter
        rec = self._rec
        t0 = clock()
        try:
            stream = self._stream
            if getattr(stream, "calibrating", False):  # num_workers="auto" measuring on these batches
                outer, LOCAL.maps = LOCAL.maps, None  # its time is counted as calibration
                try:
                    value = stream._next()
                finally:
                    LOCAL.maps = outer
                batch = rec.prefetched(value, (0.0, 0.0, 0.0, 0.0, 0, 0, clock() - t0), False)
                _, self._last_padding = self._meta.popleft()
                return batch
            calibration = 0.0
            tasks = self._tasks
            p0 = tasks.plan_seconds  # type: ignore[attr-defined]
            value, wait, get, fill, ready, flight = stream._next_timed()
            plan = tasks.plan_seconds - p0  # type: ignore[attr-defined]
            batch = rec.prefetched(value, (wait, get, fill, plan, ready, flight, calibration),
                                   type(self._source.pool) is InlinePool)
            _, self._last_padding = self._meta.popleft()
            return batch
        finally:
            rec.node += clock() - t0

    @property
    def last_padding(self) -> Any:
        """For a rank-sharded plan: the mask of wrap-around duplicates in the last batch consumed, else None."""
        return self._last_padding

    def _held(self) -> int:
        return len(self._meta)

    def remaining(self) -> Any:
        if self._stream is None or self._stream.closed and not self._meta:
            left = super().remaining()
            return 0 if left is not None else None
        return super().remaining()

    def close(self) -> None:
        """Cancel the batches prepared ahead (idempotent); the pool stays open."""
        if self._stream is not None:
            self._stream.close()

    def __enter__(self) -> ParallelBatchIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _inner_state(self) -> Any:
        held = len(self._meta)
        if not held:
            return self._inner.state_dict()
        snap = self._meta[0][0]
        return snap if snap is not None else self._inner.state_dict(pending=held)

    def _load_inner_state(self, state: Any) -> None:
        self.close()
        self._meta.clear()
        self._last_padding = None
        self._inner.load_state_dict(state)
        self._start()

    def _own_state(self) -> dict:
        return {"source": self._source.identity()}

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        check_state(state, {"source": self._source.identity()}, type(self).__name__)


def _pool_kind(pool: Any) -> str | None:
    if pool is None:
        return None
    if isinstance(pool, InlinePool):
        return "inline"
    if isinstance(pool, WorkerThreadPool):
        return "thread"
    name = type(pool).__name__
    if name == "WorkerProcessPool":
        return "process"
    if name == "JoblibWorkerPool":
        return f"joblib ({getattr(pool, 'backend_name', '?')})"
    return name


def prefetch(ds: Any, num_workers: int | str = 2, *, buffer_size: int | None = None, kind: str | None = None,
             start_method: str | None = None, timeout: Any = None,
             memory_budget: int | None = None) -> ParallelDataSource:
    """Return a :class:`ParallelDataSource` over ``ds`` with a pool of its own.

    This is what ``ds.prefetch(...)`` calls; see
    :meth:`batchup.sources.AbstractDataSource.prefetch`. With
    ``num_workers="auto"`` the pool is chosen by measuring
    (:mod:`batchup.parallel.autotune`).

    Parameters
    ----------
    ds : RandomAccessDataSource
        The source whose batches are prepared.
    num_workers : int or "auto", default 2
        Worker processes (or threads); ``0`` runs every batch in the calling
        thread (an :class:`~batchup.parallel.InlinePool`); ``"auto"``
        measures the first batches and chooses.
    buffer_size : int, optional
        Keyword-only: batches prepared ahead (default ``max(4, 2 * num_workers)``).
    kind : {'process', 'thread'}, optional
        Keyword-only: the kind of workers (processes when ``num_workers`` is
        an int; chosen by measuring with ``"auto"``).
    start_method : {'fork', 'forkserver', 'spawn'}, optional
        Keyword-only: how worker processes start (checked for every ``kind``).
    timeout : float, optional
        Keyword-only: seconds to wait for one batch before
        :class:`~batchup.parallel.BatchTimeoutError`.
    memory_budget : int, optional
        Keyword-only, with ``"auto"``: bytes the batches in flight may take
        (default 10 % of the available memory, between 64 MiB and 2 GiB).

    Returns
    -------
    ParallelDataSource
        It owns its pool: call ``close()`` or use it in a ``with`` block.

    Raises
    ------
    TypeError
        If ``ds`` is not a random-access source, or ``num_workers`` is not an int.
    ValueError
        For a negative ``num_workers``, a ``buffer_size < 1``, an unknown
        ``kind`` or ``start_method``.
    """
    if kind not in (None, "process", "thread"):
        raise ValueError(f"kind must be 'process' or 'thread' (or None), got {kind!r}")
    check_start_method(start_method)  # for every kind and worker count: a typo never passes silently
    if isinstance(num_workers, str):
        if num_workers != "auto":
            raise ValueError(f"num_workers must be an int >= 0 or 'auto', got {num_workers!r}")
        # Imported here: autotune builds on this module.
        from batchup.parallel.autotune import AutoParallelDataSource

        return AutoParallelDataSource(ds, kind=kind, buffer_size=buffer_size, memory_budget=memory_budget,
                                      start_method=start_method, timeout=timeout)
    if memory_budget is not None:
        raise ValueError(
            f"memory_budget applies to num_workers='auto' only, got memory_budget={memory_budget!r} with "
            f"num_workers={num_workers!r}; pass buffer_size to bound the batches in flight"
        )
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) and not hasattr(num_workers, "__index__"):
        raise TypeError(f"num_workers must be an int >= 0 or 'auto', got {num_workers!r}")
    num_workers = int(num_workers)
    if num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0 or 'auto', got {num_workers!r}")
    if buffer_size is None:
        buffer_size = max(4, 2 * num_workers)
    check_buffer_size(buffer_size, "buffer_size")
    if not isinstance(ds, AbstractDataSource) or not ds.is_random_access:
        # Checked before a pool exists, so a bad source leaves nothing running.
        ParallelDataSource(ds, buffer_size, InlinePool())
    if num_workers == 0:
        pool: AbstractWorkerPool = InlinePool()
    elif kind == "thread":
        pool = WorkerThreadPool(num_workers)  # kind=None means processes, as it always has
    else:
        from batchup.parallel.process_pool import WorkerProcessPool

        pool = WorkerProcessPool(num_workers, start_method=start_method)
    try:
        return ParallelDataSource(ds, buffer_size, pool, timeout=timeout, _owns_pool=True)
    except BaseException:
        pool.close()
        raise
