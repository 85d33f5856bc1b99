"""ParallelDataSource: prepare a random-access source's batches in a worker pool.

The index batches are drawn in the calling thread (so shuffling uses the
caller's RNG exactly as the serial iterator would); each becomes a task that
runs ``samples_by_indices_nomapping`` in a worker. Results come back in
order, so the batches are those of ``ds.batch_iterator(...)`` for the same
arguments, whatever the number of workers. A seeded ``ds.map(fn, seed=s)``
gets its generator from ``(s, batch number)`` in the worker.
"""
from __future__ import annotations

import collections
from typing import Any, Mapping

from batchup._iterator import StatefulIterator, check_state
from batchup.parallel import _worker
from batchup.parallel.pool import AbstractWorkerPool, InlinePool, WorkerThreadPool, check_timeout
from batchup.parallel.work_stream import WorkStream, check_buffer_size
from batchup.sources.base import AbstractDataSource, _load_into, _state_of

__all__ = ["ParallelBatchIterator", "ParallelDataSource", "prefetch"]


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

    def __init__(self, ds: Any, batch_buffer_size: int, pool: AbstractWorkerPool, *, timeout: Any = None,
                 _owns_pool: bool = False) -> None:
        if not isinstance(ds, AbstractDataSource):
            raise TypeError(f"ds must be a data source (AbstractDataSource), got {type(ds).__name__}")
        if not ds.is_random_access:
            raise TypeError(
                f"ds must be random access to prepare batches in parallel, got {type(ds).__name__}; "
                "ArrayDataSource, and maps and composites of random-access sources, qualify"
            )
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

    def batch_iterator(self, batch_size: int, **kwargs: Any) -> ParallelBatchIterator:
        """Return an iterator over the batches of ``ds.batch_iterator(batch_size, **kwargs)``.

        The workers start preparing batches at once.
        """
        return ParallelBatchIterator(self, self.ds.batch_indices_iterator(batch_size, **kwargs))

    def close(self) -> None:
        """Close the pool if this source created it (``ds.prefetch(...)``); idempotent."""
        if self._owns_pool:
            self.pool.close()

    def __enter__(self) -> ParallelDataSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _BatchTasks:
    """Draw index batches in the calling thread and turn them into fetch tasks.

    ``snapshots`` receives, for every task handed out, the index iterator's
    state *before* that batch, so the consumer's position can be saved.
    """

    def __init__(self, indices: Any, shared: Any, first: int, snapshots: collections.deque) -> None:
        self.indices, self.shared, self.number, self.snapshots = indices, shared, first, snapshots
        self.can_snapshot = callable(getattr(indices, "state_dict", None))

    def __iter__(self) -> _BatchTasks:
        return self

    def __next__(self) -> tuple:
        snap = None
        if self.can_snapshot:
            try:
                snap = self.indices.state_dict()
            except TypeError:
                self.can_snapshot = False
        idx = next(self.indices)
        self.snapshots.append(snap)
        number = self.number
        self.number = number + 1
        return (_worker.fetch_batch, (self.shared, idx, number))


class ParallelBatchIterator(StatefulIterator):
    """The iterator of a :class:`ParallelDataSource`: batches in order, resumable.

    ``state_dict()`` records the batches the *consumer* has received, not
    those the workers prepared ahead; ``load_state_dict()`` rebuilds the
    index stream at that position and resubmits, with any worker count.
    """

    KIND = "parallel"

    def __init__(self, source: ParallelDataSource, indices: Any) -> None:
        self._source = source
        self._indices = indices
        self._consumed = 0
        self._snapshots: collections.deque = collections.deque()
        self._stream: WorkStream | None = None
        self._start()

    def _start(self) -> None:
        src = self._source
        tasks = _BatchTasks(self._indices, src.shared_ds, self._consumed, self._snapshots)
        self._stream = WorkStream(
            src.pool, tasks, src.batch_buffer_size, timeout=src.timeout, _label="batch",
            _first_number=self._consumed,
        )

    def __next__(self) -> Any:
        if self._stream is None:
            raise StopIteration
        batch = self._stream._next()
        self._snapshots.popleft()
        self._consumed += 1
        return batch

    def remaining(self) -> Any:
        fn = getattr(self._indices, "remaining", None)
        left = fn() if fn is not None else None
        if left is None:
            return None
        return 0 if self._stream is None or self._stream.closed else left + len(self._snapshots)

    def __len__(self) -> int:
        left = self.remaining()
        if left is None:
            raise TypeError("this batch iterator is endless or of unknown length")
        return left

    def close(self) -> None:
        """Cancel the batches prepared ahead (idempotent); the pool stays open."""
        if self._stream is not None:
            self._stream.close()

    def __enter__(self) -> ParallelBatchIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def state_dict(self) -> dict:
        if self._snapshots:
            indices = self._snapshots[0]
            if indices is None:
                raise TypeError(f"cannot checkpoint: the index iterator {self._indices!r} has no state_dict()")
        else:
            indices = _state_of(self._indices)
        return {"kind": self.KIND, "batches": self._consumed, "indices": indices}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, {"kind": self.KIND}, type(self).__name__)
        try:
            batches = int(state["batches"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{type(self).__name__}: malformed state ({err!r})") from err
        self.close()
        self._snapshots.clear()
        _load_into(self._indices, state["indices"])
        self._consumed = batches
        self._start()


def prefetch(ds: Any, num_workers: int = 2, *, buffer_size: int | None = None, kind: str = "process",
             start_method: str | None = None, timeout: Any = None) -> ParallelDataSource:
    """Return a :class:`ParallelDataSource` over ``ds`` with a pool of its own.

    This is what ``ds.prefetch(...)`` calls; see
    :meth:`batchup.sources.AbstractDataSource.prefetch`.
    """
    if kind not in ("process", "thread"):
        raise ValueError(f"kind must be 'process' or 'thread', got {kind!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) and not hasattr(num_workers, "__index__"):
        raise TypeError(f"num_workers must be an int >= 0, got {num_workers!r}")
    num_workers = int(num_workers)
    if num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    if buffer_size is None:
        buffer_size = max(4, 2 * num_workers)
    check_buffer_size(buffer_size, "buffer_size")
    if not isinstance(ds, AbstractDataSource) or not ds.is_random_access:
        # Checked before a pool exists, so a bad source leaves nothing running.
        ParallelDataSource(ds, buffer_size, InlinePool())
    if num_workers == 0:
        pool: AbstractWorkerPool = InlinePool()
    elif kind == "thread":
        pool = WorkerThreadPool(num_workers)
    else:
        from batchup.parallel.process_pool import WorkerProcessPool

        pool = WorkerProcessPool(num_workers, start_method=start_method)
    try:
        return ParallelDataSource(ds, buffer_size, pool, timeout=timeout, _owns_pool=True)
    except BaseException:
        pool.close()
        raise
