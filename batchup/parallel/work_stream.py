"""WorkStream: a bounded, ordered stream of tasks submitted ahead of consumption.

The stream keeps up to ``task_buffer_size`` tasks outstanding on a pool and
hands back their results in submission order, whatever order they finish
in. Taking a result submits the next task, so the buffer is the only
backpressure needed: a slow consumer never lets work pile up.
"""
from __future__ import annotations

import collections
import time
import weakref
from typing import Any, Iterator

from batchup._checks import is_int
from batchup.parallel.pool import AbstractWorkerPool, check_timeout

__all__ = ["WorkStream", "check_buffer_size"]


def check_buffer_size(value: Any, name: str) -> int:
    """Return a buffer size as an int, or raise naming the argument.

    Parameters
    ----------
    value : int
        The requested number of tasks or batches kept outstanding.
    name : str
        The argument's name, for the messages.

    Returns
    -------
    int
        ``value`` as a plain int.

    Raises
    ------
    TypeError
        If ``value`` is not an int (a bool is not).
    ValueError
        If ``value < 1``.
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _split_task(task: Any) -> tuple:
    if not isinstance(task, tuple) or not 1 <= len(task) <= 3:
        raise TypeError(f"a task must be a tuple (fn,), (fn, args) or (fn, args, kwargs), got {task!r}")
    fn = task[0]
    if not callable(fn):
        raise TypeError(f"the first element of a task must be callable, got {fn!r}")
    args = tuple(task[1]) if len(task) > 1 else ()
    kwargs = dict(task[2]) if len(task) > 2 else None
    return fn, args, kwargs


class WorkStream:
    """Run the tasks of ``task_generator`` on ``worker_pool``, ``task_buffer_size`` at a time.

    Parameters
    ----------
    worker_pool : AbstractWorkerPool
        The pool that runs the tasks.
    task_generator : iterator
        Yields tasks ``(fn, args)`` (also ``(fn,)`` or ``(fn, args, kwargs)``).
        It is advanced in the calling thread.
    task_buffer_size : int, default 20
        Tasks kept outstanding; construction submits that many at once.
    timeout : float, optional
        Keyword-only: seconds :meth:`retrieve` waits for one result before
        raising :class:`~batchup.parallel.errors.BatchTimeoutError`.

    Notes
    -----
    After a task raises (or times out), the exception reaches the caller at
    that task's turn, the remaining tasks are cancelled and the stream ends.
    An exception raised by ``task_generator`` itself is also delivered at its
    turn: after the results of every task it produced before failing, as a
    serial loop over the same tasks would.
    ``close()`` (or leaving a ``with`` block, or dropping the stream)
    cancels what is outstanding.

    Examples
    --------
    >>> from batchup.parallel import WorkerThreadPool
    >>> with WorkerThreadPool(processes=2) as pool:
    ...     stream = pool.work_stream((pow, (2, i)) for i in range(5))
    ...     print(list(stream.retrieve_iter()))
    [1, 2, 4, 8, 16]
    """

    def __init__(
        self,
        worker_pool: AbstractWorkerPool,
        task_generator: Any,
        task_buffer_size: int = 20,
        *,
        timeout: Any = None,
        _label: str = "task",
        _first_number: int = 0,
    ) -> None:
        if not isinstance(worker_pool, AbstractWorkerPool):
            raise TypeError(f"worker_pool must be an AbstractWorkerPool, got {type(worker_pool).__name__}")
        self._buffer = check_buffer_size(task_buffer_size, "task_buffer_size")
        self._timeout = check_timeout(timeout)
        worker_pool._check_open()
        self._pool = worker_pool
        self._tasks = iter(task_generator)
        self._label = _label
        self._number = int(_first_number)
        self._outstanding: collections.deque = collections.deque()
        self._exhausted = False
        self._error: Exception | None = None  # raised by task_generator, delivered at its turn
        self._ring = worker_pool._new_ring(self._buffer)
        self._finalizer = weakref.finalize(self, _release, worker_pool, self._outstanding, self._ring)
        try:
            self._fill()
        except BaseException:
            self.close()
            raise

    def _fill(self) -> None:
        while len(self._outstanding) < self._buffer and not self._exhausted:
            try:
                task = next(self._tasks)
                fn, args, kwargs = _split_task(task)
            except StopIteration:
                self._exhausted = True
                return
            except Exception as err:  # noqa: BLE001 - delivered after the tasks before it
                self._exhausted = True
                self._error = err
                return
            number = self._number
            slot = None if self._ring is None else (self._ring, self._ring.path(number))
            fut = self._pool._submit(fn, args, kwargs, label=f"{self._label} {number}", slot=slot)
            self._outstanding.append(fut)
            self._number = number + 1

    @property
    def closed(self) -> bool:
        """Whether the stream has ended or was closed (nothing outstanding any more)."""
        return not self._finalizer.alive

    def _next(self) -> Any:
        """Return the next result; raise StopIteration when nothing is outstanding."""
        if self.closed:
            raise StopIteration
        if not self._outstanding:
            err, self._error = self._error, None
            self.close()
            if err is not None:
                raise err
            raise StopIteration
        try:
            value = self._outstanding[0].get(self._timeout)
            self._outstanding.popleft()
            self._fill()
        except BaseException:
            self.close()
            raise
        return value

    def _next_timed(self) -> tuple:
        """Return :meth:`_next`'s result and where the time went, for the stall report.

        ``(value, seconds waiting, seconds getting, seconds refilling, ready, in flight)``:
        waiting for the oldest task, then taking its result (decoding), then
        submitting the next tasks; ``ready`` and ``in flight`` count the
        outstanding tasks (done, and all) when the call began.
        """
        if self.closed or not self._outstanding:
            return (self._next(), 0.0, 0.0, 0.0, 0, 0)
        clock = time.perf_counter
        outstanding = self._outstanding
        fut = outstanding[0]
        flight = len(outstanding)
        ready = sum(1 for f in outstanding if f.done())
        t0 = clock()
        try:
            if not fut.wait(self._timeout):
                raise fut._timed_out(self._timeout)
            t1 = clock()
            value = fut.get()
            t2 = clock()
            outstanding.popleft()
            self._fill()
        except BaseException:
            self.close()
            raise
        return (value, t1 - t0, t2 - t1, clock() - t2, ready, flight)

    def retrieve(self) -> Any:
        """Return the oldest task's result (re-raising its exception), or ``None`` when done.

        Returns
        -------
        object
            The oldest outstanding task's return value (then the next task is
            submitted), or ``None`` when every task has been retrieved.

        Raises
        ------
        Exception
            The task's own exception, re-raised with the worker's traceback as
            ``__cause__``; the stream is closed.
        BatchTimeoutError
            If the result was not ready within ``timeout``.
        """
        try:
            return self._next()
        except StopIteration:
            return None

    def retrieve_iter(self) -> Iterator[Any]:
        """Yield the results in submission order until nothing is outstanding.

        Yields
        ------
        object
            Each task's return value, in the order the tasks were generated.
        """
        while True:
            try:
                value = self._next()
            except StopIteration:
                return
            yield value

    def close(self) -> None:
        """Cancel outstanding tasks and free the stream's result slots (idempotent)."""
        self._finalizer()

    def __enter__(self) -> WorkStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _release(pool: AbstractWorkerPool, outstanding: collections.deque, ring: Any) -> None:
    futures = list(outstanding)
    outstanding.clear()
    if futures:
        pool._cancel(futures)
    if ring is not None:
        ring.close()
