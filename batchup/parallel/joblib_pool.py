"""JoblibWorkerPool: run batch preparation on whatever joblib backend is active.

``with joblib.parallel_config(backend="dask"):`` (with a
``dask.distributed.Client``) moves the work onto a Dask cluster with no
other change, and ``backend="ray"`` (after ``ray.init()`` and
``ray.util.joblib.register_ray()``) onto a Ray cluster; ``"loky"`` (joblib's
default) uses local processes and ``"threading"`` threads. The backend is the
one active when the pool is created.

joblib's own generator keeps pulling tasks whether or not anyone reads the
results, so it cannot give a stream its bounded buffer. This pool therefore
keeps the bound itself: with Dask it submits each task to the client (the
stream's buffer is the window of futures, and shared constants are
scattered to every worker once); with Ray it does the same through Ray's API
(:mod:`batchup.parallel._ray`: one ``ray.remote`` task per batch, shared
constants ``ray.put`` once); with other backends a background thread runs
joblib's ``Parallel`` over windows of at most ``window`` waiting tasks.
"""
from __future__ import annotations

import collections
import itertools
import threading
import weakref
from typing import Any

from batchup.parallel import _ray, _worker
from batchup.parallel.errors import PoolClosedError, WorkerCrashedError, rebuild_exception
from batchup.parallel.pool import AbstractWorkerPool, Future, SharedConstant

__all__ = ["JoblibWorkerPool"]

_ids = itertools.count()


class JoblibWorkerPool(AbstractWorkerPool):
    """Run tasks on the active joblib backend (loky, threading, dask, ...).

    Parameters
    ----------
    n_jobs : int, optional
        Workers to use; default: the ``n_jobs`` of the active
        ``joblib.parallel_config``, else every core the backend offers.
        Not used with Dask and Ray, where ``num_workers`` is the cluster's
        CPU count and the stream's buffer bounds the tasks in flight.
    window : int, optional
        Keyword-only. For backends other than Dask and Ray, the most tasks
        handed to one ``joblib.Parallel`` call (default ``2 * n_jobs``).

    Raises
    ------
    RuntimeError
        Under the ``"ray"`` backend, if this process is not connected to a
        Ray (``ray.init`` was not called).
    TypeError
        Under the ``"ray"`` backend, if its ``ray_remote_args`` is not a dict.

    Notes
    -----
    Tasks and their arguments must be picklable by the backend (cloudpickle
    for loky, Dask and Ray). Under Dask, :meth:`shared_constant` scatters the
    value to every worker once (``client.scatter(x, broadcast=True)``); under
    Ray it puts the value in the object store once (``ray.put``); so a data
    source is not shipped with every batch. The cluster's workers need
    batchup installed. The pool never closes a Dask client, or disconnects a
    Ray, that it did not create.

    Under Ray each task asks for one CPU and is not re-run when its worker
    dies (:class:`~batchup.parallel.WorkerCrashedError` instead); the
    backend's ``ray_remote_args`` override both
    (``parallel_config(backend="ray", ray_remote_args={"max_retries": 3})``).
    Tasks whose results nobody will read (a stream closed early, a batch
    past the stream's ``timeout``, ``close()``) are forgotten, not stopped:
    they run to their end on the cluster (``ray.cancel`` can abort the
    calling process in Ray 2.60; see :mod:`batchup.parallel._ray`).

    Examples
    --------
    >>> import joblib
    >>> with joblib.parallel_config(backend="threading", n_jobs=2):
    ...     pool = JoblibWorkerPool()
    >>> with pool:
    ...     print(list(pool.work_stream((pow, (3, i)) for i in range(4)).retrieve_iter()))
    [1, 3, 9, 27]
    """

    def __init__(self, n_jobs: int | None = None, *, window: int | None = None) -> None:
        from joblib.parallel import get_active_backend

        backend, active_jobs = get_active_backend()
        jobs = n_jobs if n_jobs is not None else active_jobs
        client = getattr(backend, "client", None)
        self.backend_name = type(backend).__name__
        if client is not None:
            self._impl: Any = _DaskImpl(client)
            self.num_workers = max(1, sum(client.ncores().values()))
        elif _ray.is_ray_backend(backend):
            self._impl = _ray.RayImpl(backend)
            self.num_workers = max(1, self._impl.num_cpus())
        else:
            effective = backend.effective_n_jobs(jobs if jobs is not None else -1)
            self.num_workers = max(1, int(effective))
            self._impl = _WindowImpl(backend, self.num_workers, window or 2 * self.num_workers)
        self._finalizer = weakref.finalize(self, self._impl.shutdown)

    @property
    def closed(self) -> bool:
        return self._impl.closed

    def shared_constant(self, x: Any) -> Any:
        self._check_open()
        return self._impl.share(x)

    def _submit(self, fn: Any, args: tuple, kwargs: dict | None = None, *, label: str = "a task",
                slot: Any = None) -> Future:
        self._check_open()
        return self._impl.submit(fn, args, kwargs, label)

    def _cancel(self, futures: list) -> None:
        self._impl.cancel(futures)

    def close(self) -> None:
        """Cancel outstanding tasks and release scattered data (the backend stays up)."""
        self._finalizer()


def _complete(fut: Future, outcome: tuple) -> None:
    if fut.cancelled or fut.done():
        return
    if outcome[0] == "ok":
        fut.set_result(outcome[1])
    else:
        fut.set_exception(rebuild_exception(*outcome[1:]))


class _DaskImpl:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.closed = False
        self.live: dict = {}
        self.futures: weakref.WeakSet = weakref.WeakSet()  # ours, to fail on close()
        self.scattered: list = []
        self.lock = threading.Lock()

    def share(self, x: Any) -> SharedConstant:
        dfut = self.client.scatter(x, broadcast=True, hash=False)
        self.scattered.append(dfut)
        return SharedConstant(x, dfut)

    def submit(self, fn: Any, args: tuple, kwargs: dict | None, label: str) -> Future:
        plain = [a.ref if isinstance(a, SharedConstant) and a.ref is not None else
                 (a.value if isinstance(a, SharedConstant) else a) for a in args]
        fut = Future(label)
        dfut = self.client.submit(_worker.call_captured, fn, label, kwargs, *plain, pure=False)
        with self.lock:
            self.live[id(fut)] = dfut
            self.futures.add(fut)
        fut._abandon = self._abandon

        def done(f: Any, fut: Future = fut) -> None:
            with self.lock:
                self.live.pop(id(fut), None)
            if fut.cancelled or fut.done():
                return
            try:
                outcome = f.result()
            except BaseException as err:  # noqa: BLE001 - a lost worker, a cancelled future
                fut.set_exception(WorkerCrashedError(f"{label} failed on the Dask cluster: {err!r}"))
            else:
                _complete(fut, outcome)

        dfut.add_done_callback(done)
        return fut

    def _abandon(self, fut: Future) -> None:
        self.cancel([fut])

    def cancel(self, futures: list) -> None:
        for fut in futures:
            fut.cancelled = True
            with self.lock:
                dfut = self.live.pop(id(fut), None)
            if dfut is not None:
                dfut.cancel()

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self.lock:
            live = list(self.live.items())
            self.live.clear()
            futures = list(self.futures)
            self.futures.clear()
        for fut in futures:
            _fail_closed(fut)
        for _, dfut in live:
            dfut.cancel()
        for dfut in self.scattered:
            dfut.release()
        self.scattered.clear()


class _WindowImpl:
    def __init__(self, backend: Any, n_jobs: int, window: int) -> None:
        self.backend, self.n_jobs, self.window = backend, n_jobs, max(1, int(window))
        self.closed = False
        self.pending: collections.deque = collections.deque()
        self.running: list = []  # the futures of the window joblib is running
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"batchup-joblib-pool-{next(_ids)}", daemon=True)
        self.thread.start()

    def share(self, x: Any) -> Any:
        return x

    def submit(self, fn: Any, args: tuple, kwargs: dict | None, label: str) -> Future:
        fut = Future(label)
        fut._abandon = lambda f: self.cancel([f])
        args = tuple(a.value if isinstance(a, SharedConstant) else a for a in args)
        with self.cond:
            if self.closed:
                raise PoolClosedError("JoblibWorkerPool is closed; create a new pool")
            self.pending.append((fut, fn, args, kwargs))
            self.cond.notify()
        return fut

    def cancel(self, futures: list) -> None:
        for fut in futures:
            fut.cancelled = True

    def _run(self) -> None:
        from joblib import Parallel, delayed

        while True:
            with self.cond:
                while not self.closed and not self.pending:
                    self.cond.wait()
                if self.closed:
                    return
                batch: list = []
                while self.pending and len(batch) < self.window:
                    item = self.pending.popleft()
                    if not item[0].cancelled:
                        batch.append(item)
                self.running = [item[0] for item in batch]
            if not batch:
                continue
            done = 0
            try:
                outcomes = Parallel(n_jobs=self.n_jobs, backend=self.backend, return_as="generator")(
                    delayed(_worker.call_captured)(fn, fut.label, kwargs, *args)
                    for fut, fn, args, kwargs in batch
                )
                for (fut, *_), outcome in zip(batch, outcomes):
                    _complete(fut, outcome)
                    done += 1
            except BaseException as err:  # noqa: BLE001 - a dead backend worker, a pickling error
                for fut, *_ in batch[done:]:
                    if fut.done():
                        continue
                    if isinstance(err, (TypeError, AttributeError)) or "pickl" in str(err).lower():
                        fut.set_exception(err)
                    else:
                        fut.set_exception(WorkerCrashedError(f"{fut.label} failed in the joblib backend: {err!r}"))
            with self.cond:
                self.running = []

    def shutdown(self) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            pending = [item[0] for item in self.pending]
            self.pending.clear()
            self.cond.notify_all()
        for fut in pending:
            _fail_closed(fut)
        if self.thread is not threading.current_thread():
            self.thread.join(5.0)
        with self.cond:
            running = list(self.running)
        for fut in running:  # a window joblib could not finish in time
            _fail_closed(fut)


def _fail_closed(fut: Future) -> None:
    if not fut.done():
        fut.set_exception(PoolClosedError(f"the pool was closed before {fut.label} finished"))
