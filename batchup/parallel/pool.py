"""Worker pools: the pool contract, a thread pool, and the inline (serial) pool.

A pool runs tasks ``fn(*args)`` and hands back futures whose ``get()``
blocks and re-raises a task's exception. Streams (:mod:`work_stream`) keep
a bounded number of tasks in flight on a pool and return results in
submission order. Pools can be reused by any number of streams, are closed
with :meth:`AbstractWorkerPool.close` or a ``with`` block, and are closed
automatically when garbage-collected or at interpreter exit.

Every parallel path has a serial twin: :class:`InlinePool` (``num_workers=0``)
runs each task in the calling thread when its result is asked for, and gives
exactly the same results.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from batchup._checks import is_int
from batchup.parallel import _worker
from batchup.parallel.errors import BatchTimeoutError, PoolClosedError, attach_cause, rebuild_exception

__all__ = ["AbstractWorkerPool", "InlinePool", "SharedConstant", "WorkerThreadPool", "check_processes"]

#: Seconds ``close()`` waits for workers to finish before giving up on (threads) or killing (processes) them.
CLOSE_TIMEOUT = 3.0
_pool_ids = itertools.count()


def check_processes(value: Any, name: str = "processes") -> int:
    """Return a worker count as an int; TypeError/ValueError otherwise, a warning when oversized.

    Parameters
    ----------
    value : int
        The requested number of workers.
    name : str, default "processes"
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

    Warns
    -----
    UserWarning
        If ``value`` is more than four times the number of CPUs.
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    cpus = os.cpu_count() or 1
    if value > 4 * cpus:
        warnings.warn(
            f"{name}={value} is more than 4 x the {cpus} CPUs of this machine; extra workers "
            "only add overhead",
            UserWarning,
            stacklevel=3,
        )
    return int(value)


def check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
    return float(timeout)


class SharedConstant:
    """A value shared with a pool's workers once (see :meth:`AbstractWorkerPool.shared_constant`).

    Pass it as a top-level positional argument of a task; the task function
    receives the plain value.

    Parameters
    ----------
    value : object
        The shared value (a process pool keeps it here too, for inline use).
    ref : object, optional
        How a process pool's workers find their copy (a shared-memory
        reference); ``None`` for pools whose workers share the caller's memory.
    """

    def __init__(self, value: Any, ref: Any = None) -> None:
        self.value = value
        self.ref = ref
        self.pool: object = None  # the process pool core that staged the value (set by that pool)

    def __repr__(self) -> str:
        return f"SharedConstant({type(self.value).__name__})"


class Future:
    """The result of one task; :meth:`get` blocks and re-raises the task's exception."""

    __slots__ = ("label", "_event", "_value", "_error", "_decode", "cancelled", "_abandon", "task_id", "__weakref__")

    def __init__(self, label: str) -> None:
        self.label = label
        self._event = threading.Event()
        self._value: Any = None
        # An exception, or a worker's report (payload, type name, message, traceback) not yet rebuilt.
        self._error: BaseException | tuple | None = None
        self._decode: Any = None
        self.cancelled = False
        self._abandon: Any = None
        self.task_id: int | None = None

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, value: Any, decode: Any = None) -> None:
        self._value, self._decode = value, decode
        self._event.set()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def set_remote_exception(self, report: tuple) -> None:
        """Fail with a worker's report ``(payload, type name, message, traceback)``, rebuilt by :meth:`get`.

        Rebuilding unpickles, which may import a module: it happens in the
        consumer's thread, never in a pool's service thread.
        """
        self._error = report
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until done (in short slices, so Ctrl-C stays responsive); return ``done()``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._event.is_set():
            left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if left <= 0:
                return False
            self._event.wait(left)
        return True

    def _timed_out(self, timeout: Any) -> BatchTimeoutError:
        """Give up on this task (a process worker preparing it is replaced); return the error to raise."""
        if self._abandon is not None:
            self._abandon(self)
        return BatchTimeoutError(f"{self.label} was not ready within timeout={timeout:g} s")

    def get(self, timeout: float | None = None) -> Any:
        """Return the task's value, raising its exception or :class:`BatchTimeoutError`."""
        if not self.wait(timeout):
            raise self._timed_out(timeout)
        if self._error is not None:
            if isinstance(self._error, tuple):
                self._error = rebuild_exception(*self._error)
            raise self._error
        if self._decode is not None:
            decode, self._decode = self._decode, None
            self._value = decode(self._value)
        return self._value


class AbstractWorkerPool:
    """Base class of worker pools.

    Subclasses implement :meth:`shared_constant` and ``_submit``; the base
    class provides ``_apply_async`` (BatchUp 0.2's name), :meth:`work_stream`,
    :meth:`parallel_data_source`, :meth:`close` and the context manager.
    """

    #: Number of workers (0 for the inline pool).
    num_workers = 0

    def shared_constant(self, x: Any) -> Any:
        """Share ``x`` with the workers once; pass the result as a task argument.

        Thread and inline pools return ``x`` itself (nothing is copied);
        a process pool copies it to shared memory once.

        Parameters
        ----------
        x : object
            The value, typically a large array every task reads.

        Returns
        -------
        object
            ``x``, or a :class:`SharedConstant` that the workers turn back into
            the value; pass it as a top-level positional argument of tasks.

        Raises
        ------
        PoolClosedError
            If the pool is closed.
        """
        raise NotImplementedError("shared_constant is abstract in AbstractWorkerPool")

    def _submit(self, fn: Any, args: tuple, kwargs: dict | None = None, *, label: str = "a task",
                slot: Any = None) -> Future:
        raise NotImplementedError("_submit is abstract in AbstractWorkerPool")

    def _apply_async(self, fn: Any, args: tuple) -> Future:
        """Schedule ``fn(*args)``; return an object whose ``get()`` blocks for the value."""
        return self._submit(fn, tuple(args))

    def _new_ring(self, size: int) -> Any:
        """Return shared-memory result slots for a stream (process pools only)."""
        return None

    def _cancel(self, futures: list) -> None:
        """Forget tasks whose results nobody will read."""
        for fut in futures:
            fut.cancelled = True

    def work_stream(self, task_generator: Any, task_buffer_size: int = 20, *, timeout: Any = None) -> Any:
        """Return a :class:`~batchup.parallel.work_stream.WorkStream` running ``task_generator`` here.

        Parameters
        ----------
        task_generator : iterable of tuples
            Yields ``(fn, args)`` tasks (BatchUp 0.2's form), submitted to
            this pool in order.
        task_buffer_size : int, default 20
            How many tasks run ahead of the consumer.
        timeout : float or None, default None
            Keyword-only. Seconds to wait for each result before
            :class:`BatchTimeoutError` (``None``: no limit).

        Returns
        -------
        WorkStream
            Its ``retrieve()`` returns the results in submission order.
        """
        from batchup.parallel.work_stream import WorkStream

        return WorkStream(self, task_generator, task_buffer_size=task_buffer_size, timeout=timeout)

    def parallel_data_source(self, ds: Any, batch_buffer_size: int = 20, *, timeout: Any = None) -> Any:
        """Return a :class:`~batchup.parallel.prefetch.ParallelDataSource` preparing ``ds``'s batches here.

        Parameters
        ----------
        ds : AbstractDataSource
            The source whose batches the workers prepare.
        batch_buffer_size : int, default 20
            How many batches are prepared ahead of the consumer.
        timeout : float or None, default None
            Keyword-only. Seconds to wait for each batch before
            :class:`BatchTimeoutError` (``None``: no limit).

        Returns
        -------
        ParallelDataSource
            A source with the ``batch_iterator`` of ``ds`` (same batches, same
            order, same state) whose batches are prepared by this pool.
        """
        from batchup.parallel.prefetch import ParallelDataSource

        return ParallelDataSource(ds, batch_buffer_size, self, timeout=timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called; a closed pool refuses new work."""
        return False

    def _check_open(self) -> None:
        if self.closed:
            raise PoolClosedError(f"{type(self).__name__} is closed; create a new pool")

    def close(self) -> None:
        """Stop the workers and free their resources (idempotent)."""

    def __enter__(self) -> AbstractWorkerPool:
        self._check_open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InlinePool(AbstractWorkerPool):
    """The serial twin: each task runs in the calling thread when its result is asked for."""

    num_workers = 0

    def __init__(self) -> None:
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def shared_constant(self, x: Any) -> Any:
        self._check_open()
        return x

    def _submit(self, fn: Any, args: tuple, kwargs: dict | None = None, *, label: str = "a task",
                slot: Any = None) -> Future:
        self._check_open()
        fut = Future(label)
        fut.set_result((fn, args, kwargs), decode=_run_inline)
        return fut

    def close(self) -> None:
        self._closed = True


def _run_inline(call: tuple) -> Any:
    fn, args, kwargs = call
    return _worker.run_call(fn, tuple(a.value if isinstance(a, SharedConstant) else a for a in args), kwargs)


class WorkerThreadPool(AbstractWorkerPool):
    """Run tasks in ``processes`` worker threads (a ``concurrent.futures.ThreadPoolExecutor``), started at construction.

    Parameters
    ----------
    processes : int, default 1
        Number of worker threads (>= 1).

    Notes
    -----
    Nothing is pickled: tasks may be lambdas or closures, and
    :meth:`shared_constant` returns its argument. Threads help when tasks
    release the GIL (NumPy, I/O, decoding libraries); for Python-heavy
    preparation use :class:`~batchup.parallel.process_pool.WorkerProcessPool`.
    Any exception a task raises, ``SystemExit`` and ``KeyboardInterrupt``
    included, reaches the consumer at that task's turn, as in the serial
    twin. A task stuck forever cannot be stopped: ``close()`` warns naming
    the thread and returns, and, as for every ``concurrent.futures`` pool,
    the interpreter waits for the thread at exit (Ctrl-C ends the wait).

    Examples
    --------
    >>> with WorkerThreadPool(processes=2) as pool:
    ...     print(pool._apply_async(pow, (2, 10)).get())
    1024
    """

    def __init__(self, processes: int = 1) -> None:
        self.num_workers = self.processes = check_processes(processes)
        self._core = _ThreadCore(self.processes)
        self._finalizer = weakref.finalize(self, self._core.shutdown)

    @property
    def closed(self) -> bool:
        return self._core.closed

    def shared_constant(self, x: Any) -> Any:
        self._check_open()
        return x

    def _submit(self, fn: Any, args: tuple, kwargs: dict | None = None, *, label: str = "a task",
                slot: Any = None) -> Future:
        self._check_open()
        return self._core.submit(fn, args, kwargs, label)

    def close(self) -> None:
        self._finalizer()


class _ThreadCore:
    """The executor of a thread pool, and the tasks it holds (no reference to the pool object)."""

    def __init__(self, n: int) -> None:
        self.closed = False
        self.executor = ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"batchup-thread-pool-{next(_pool_ids)}")
        self.lock = threading.Condition()
        self.queued: set = set()  # futures submitted and not started
        self.running: dict = {}  # thread -> future being prepared
        # Start every thread now (the executor starts them lazily), so the pool's threads exist
        # from construction on, as for the process pool: n tasks that meet at a barrier need n threads.
        start = threading.Barrier(n + 1)
        for _ in range(n):
            self.executor.submit(start.wait, CLOSE_TIMEOUT)
        try:
            start.wait(CLOSE_TIMEOUT)
        except threading.BrokenBarrierError:  # pragma: no cover - a very busy machine: threads come later
            pass

    def submit(self, fn: Any, args: tuple, kwargs: dict | None, label: str) -> Future:
        fut = Future(label)
        with self.lock:
            if self.closed:
                raise PoolClosedError("WorkerThreadPool is closed; create a new pool")
            self.queued.add(fut)
        self.executor.submit(self._run, fut, fn, args, kwargs)
        return fut

    def _run(self, fut: Future, fn: Any, args: tuple, kwargs: dict | None) -> None:
        me = threading.current_thread()
        with self.lock:
            if fut not in self.queued or fut.cancelled:
                self.queued.discard(fut)
                return  # cancelled, or failed by close()
            self.queued.discard(fut)
            self.running[me] = fut
        try:
            value = _worker.run_call(fn, args, kwargs)
        except BaseException as exc:  # noqa: BLE001 - SystemExit & co. too: the consumer must not wait forever
            text = _worker.format_failure(exc, f"in thread {me.name}, while preparing {fut.label}")
            fut.set_exception(attach_cause(exc, text))
        else:
            fut.set_result(value)
        finally:
            with self.lock:
                del self.running[me]
                self.lock.notify_all()

    def shutdown(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            pending, self.queued = self.queued, set()
        for fut in pending:
            fut.set_exception(PoolClosedError(f"the pool was closed before {fut.label} ran"))
        self.executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + CLOSE_TIMEOUT
        me = threading.current_thread()
        with self.lock:
            while any(t is not me for t in self.running) and time.monotonic() < deadline:
                self.lock.wait(max(0.0, min(0.25, deadline - time.monotonic())))
            stuck = sorted(t.name for t in self.running if t is not me)
        if not stuck and threading.current_thread() not in self.running:
            # Nothing runs: let the idle threads exit now, so that a process pool started
            # next sees no other thread and can fork (see _start_method).
            self.executor.shutdown(wait=True)
        if stuck:
            warnings.warn(
                f"WorkerThreadPool.close(): thread(s) {', '.join(stuck)} are still running a task "
                f"after {CLOSE_TIMEOUT:g} s; the interpreter waits for them at exit",
                RuntimeWarning,
                stacklevel=3,
            )
