"""The Ray engine of :class:`~batchup.parallel.JoblibWorkerPool`: one Ray task per batch.

Chosen when the active joblib backend is Ray's (``ray.util.joblib.register_ray()``
then ``joblib.parallel_config(backend="ray")``). joblib's own path through that
backend cannot stream (it refuses ``return_as="generator"``) and starts a pool
of Ray actors for every ``Parallel`` call, so this module talks to Ray
directly: a shared constant (the data source) goes into the object store once
(``ray.put``), each task is a ``ray.remote`` call whose result comes back
through ``ObjectRef.future()``, and the stream's buffer bounds the tasks in
flight.

The pool never calls ``ray.cancel``: in Ray 2.60 a cancel that meets the
task's completion aborts the calling process (``RAY_CHECK`` "Tried to
complete task that was not pending", seen in this module's tests; Ray
fixed one path of that race in ray-project/ray#54798, not this one). A
cancelled task (its stream closed early, its batch timed out, the pool
closed) therefore runs to its end on the cluster and its result is dropped:
at most a stream's buffer of tasks outlives the stream.

A task returns its value pickled, so the consumer unpickles it in its own
thread and gets writable arrays (Ray hands out zero-copy, read-only views of
its object store otherwise), as from the serial iterator.
"""
from __future__ import annotations

import functools
import os
import pickle
import re
import threading
import weakref
from typing import Any

from batchup.parallel import _worker
from batchup.parallel.errors import PoolClosedError, WorkerCrashedError, WorkerError
from batchup.parallel.pool import Future, SharedConstant

__all__ = ["DEFAULT_OPTIONS", "RayImpl", "is_ray_backend", "run_task"]

#: Ray options of every task, which the backend's ``ray_remote_args`` override: one CPU per
#: batch, and no silent re-run of a batch whose worker died (the death is reported instead).
DEFAULT_OPTIONS: dict = {"num_cpus": 1, "max_retries": 0}


def is_ray_backend(backend: Any) -> bool:
    """Return True for the joblib backend of ``ray.util.joblib`` (without importing Ray)."""
    return any(cls.__module__.startswith("ray.") for cls in type(backend).__mro__)


def run_task(fn: Any, label: str, kwargs: dict | None, *args: Any) -> tuple:
    """Run one task in a Ray worker; return ``("ok", pickled value)`` or the failure report.

    The report is ``("err", payload, type name, message, traceback text)``, as from
    :func:`batchup.parallel._worker.call_captured`.
    """
    outcome = _worker.call_captured(fn, label, kwargs, *args)
    if outcome[0] != "ok":
        return outcome
    try:
        return ("ok", pickle.dumps(outcome[1], protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:  # noqa: BLE001 - reported to the caller like a task's failure
        where = f"in Ray worker process {os.getpid()}, while returning {label}"
        return ("err", None, f"the result of {label} could not be pickled: {type(exc).__qualname__}",
                str(exc), _worker.format_failure(exc, where))


def _unpickle(label: str, data: bytes) -> Any:
    try:
        return pickle.loads(data)
    except Exception as err:
        raise WorkerError(
            f"the result of {label} was made on the Ray cluster but cannot be unpickled in this process "
            f"({type(err).__name__}: {err}); a module it needs may be missing here"
        ) from err


@functools.lru_cache(maxsize=1)
def _remote_task() -> Any:
    # One RemoteFunction for the process: Ray exports the function once per job.
    import ray

    return ray.remote(run_task)


class RayImpl:
    """Submit tasks to the Ray this process is connected to (``ray.init``); the pool's engine."""

    def __init__(self, backend: Any) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError(
                "JoblibWorkerPool under joblib's 'ray' backend needs a connected Ray: call "
                "ray.init(address=...) (a running cluster) or ray.init() (a local Ray) first"
            )
        self.ray = ray
        extra = getattr(backend, "ray_remote_args", None) or {}
        if not isinstance(extra, dict):
            raise TypeError(f"ray_remote_args must be a dict of ray.remote options, got {extra!r}")
        options = {**DEFAULT_OPTIONS, **extra}
        self.remote = _remote_task().options(**options)
        self.closed = False
        self.live: dict = {}  # id(future) -> ObjectRef of a task not finished yet
        self.futures: weakref.WeakSet = weakref.WeakSet()  # ours, to fail on close()
        self.shared: list = []  # SharedConstants holding ObjectRefs
        self.lock = threading.Lock()

    def num_cpus(self) -> int:
        return int(self.ray.cluster_resources().get("CPU", 0))

    def share(self, x: Any) -> SharedConstant:
        shared = SharedConstant(x, self.ray.put(x))
        with self.lock:
            self.shared.append(shared)
        return shared

    def submit(self, fn: Any, args: tuple, kwargs: dict | None, label: str) -> Future:
        plain = [a.ref if isinstance(a, SharedConstant) and a.ref is not None else
                 (a.value if isinstance(a, SharedConstant) else a) for a in args]
        fut = Future(label)
        fut._abandon = self._abandon
        ref = self.remote.remote(fn, label, kwargs, *plain)
        with self.lock:
            closed = self.closed
            if not closed:
                self.live[id(fut)] = ref
                self.futures.add(fut)
        if closed:  # close() ran while the task was being submitted
            raise PoolClosedError("JoblibWorkerPool is closed; create a new pool")
        ref.future().add_done_callback(functools.partial(self._done, fut))
        return fut

    def _done(self, fut: Future, rfut: Any) -> None:
        # In a Ray thread: only unwrap the tuple; unpickling (which may import) is the consumer's.
        with self.lock:
            self.live.pop(id(fut), None)
        if fut.cancelled or fut.done():
            return
        try:
            outcome = rfut.result()
        except BaseException as err:  # noqa: BLE001 - a dead worker or node, a lost object
            fut.set_exception(WorkerCrashedError(f"{fut.label} failed on the Ray cluster: {_describe(err)}"))
            return
        if outcome[0] == "ok":
            fut.set_result(outcome[1], decode=functools.partial(_unpickle, fut.label))
        else:
            fut.set_remote_exception(outcome[1:])

    def _abandon(self, fut: Future) -> None:
        self.cancel([fut])

    def cancel(self, futures: list) -> None:
        """Forget ``futures``: their tasks run to their end and the results are dropped (no ray.cancel)."""
        with self.lock:
            for fut in futures:
                fut.cancelled = True
                self.live.pop(id(fut), None)

    def shutdown(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.live.clear()  # the tasks run to their end; their results are dropped with the refs
            futures = list(self.futures)
            self.futures.clear()
            shared, self.shared = self.shared, []
        for fut in futures:
            if not fut.done():
                fut.set_exception(PoolClosedError(f"the pool was closed before {fut.label} finished"))
        for constant in shared:
            constant.ref = None  # drop the ObjectRef: Ray frees the object when no task needs it


def _describe(err: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # Ray colours its messages
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
