"""WorkerProcessPool: worker processes that never hang and never leak.

The pool starts its workers at construction and runs two small threads in
the parent: a *collector* that waits on every worker's result pipe and
process sentinel at once (so a dead worker is noticed at once, not at the
next timeout), and a *sender* that writes tasks to the workers' pipes (so a
full pipe never blocks the collector). Each worker holds at most
:data:`MAX_INFLIGHT` tasks; the parent knows exactly which tasks a worker
held when it died, fails the one it was preparing with
:class:`~batchup.parallel.errors.WorkerCrashedError` (naming the pid and the
signal or exit code), re-queues the rest and starts a replacement.

**Shared constants** reach each worker once. Under ``fork`` a constant that
holds large arrays (or cannot be pickled) is *inherited*: the pool forks a
fresh generation of workers that see it copy-on-write, and retires the old
ones once their tasks are done. Otherwise the constant is pickled once, with
large arrays staged in a shared segment (or referenced by file for a
``np.memmap``), and sent to each worker before its first task that uses it.
Workers keep the value as it was when :meth:`WorkerProcessPool.shared_constant`
was called (snapshot semantics).
"""
from __future__ import annotations

import atexit
import collections
import itertools
import multiprocessing
import multiprocessing.connection
import multiprocessing.util  # noqa: F401 - imported first so our atexit hook runs before its own
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
import weakref
from typing import Any

from batchup.parallel import _shm, _worker
from batchup.parallel.errors import (
    PoolClosedError,
    WorkerCrashedError,
    WorkerError,
    crash_hint,
    describe_exit,
    fd_limit_error,
    rebuild_exception,
)
from batchup.parallel.pool import CLOSE_TIMEOUT, AbstractWorkerPool, Future, SharedConstant, check_processes

__all__ = ["WorkerProcessPool"]

#: Tasks a worker holds at once: one being prepared, one waiting in its pipe.
MAX_INFLIGHT = 2
#: Messages up to this size may be written to a worker's pipe without the sender thread,
#: when the pipe has room for them (see ``_ProcessCore._send``).
DIRECT_MAX = 8192
#: Pipe buffers are pages, and a write does not always fill a partly used one: keep a margin.
_PIPE_SLACK = 4 * 4096
_START_METHODS = ("fork", "forkserver", "spawn")
_live_cores: weakref.WeakSet[_ProcessCore] = weakref.WeakSet()
_STOP = pickle.dumps(("stop",))


def _check_method(start_method: Any) -> str:
    available = [m for m in multiprocessing.get_all_start_methods() if m in _START_METHODS]
    if start_method is None:
        return "fork" if "fork" in available else multiprocessing.get_start_method()
    if start_method not in available:
        raise ValueError(f"start_method must be one of {available}, got {start_method!r}")
    return start_method


class WorkerProcessPool(AbstractWorkerPool):
    """Run tasks in ``processes`` worker processes, all started at construction.

    Parameters
    ----------
    processes : int, default 1
        Number of worker processes (>= 1).
    start_method : {'fork', 'forkserver', 'spawn'}, optional
        Keyword-only. Defaults to ``'fork'`` where available (Linux), which
        shares in-memory arrays copy-on-write and accepts lambdas in a data
        source; ``'spawn'``/``'forkserver'`` need everything picklable and
        defined at module level.

    Raises
    ------
    TypeError
        If ``processes`` is not an int.
    ValueError
        If ``processes < 1`` or ``start_method`` is unknown.

    Notes
    -----
    Tasks, their arguments and results must be picklable (except shared
    constants under ``fork``). Results of streams come back through
    shared-memory slots owned by the parent; a batch's arrays are views of
    a private mapping handed over when the result is retrieved (no copy). Workers ignore SIGINT and exit by
    themselves if the parent dies. A crashed worker is replaced, so the pool
    stays usable; its pids are :meth:`worker_pids`.

    Examples
    --------
    >>> import operator
    >>> with WorkerProcessPool(processes=2) as pool:
    ...     print(pool._apply_async(operator.mul, (6, 7)).get())
    42
    """

    def __init__(self, processes: int = 1, *, start_method: str | None = None) -> None:
        self.num_workers = self.processes = check_processes(processes)
        self.start_method = _check_method(start_method)
        _shm.sweep_stale()
        self._core = _ProcessCore(self.processes, self.start_method)
        self._finalizer = weakref.finalize(self, self._core.shutdown)

    @property
    def closed(self) -> bool:
        return self._core.closed

    def worker_pids(self) -> list:
        """Return the pids of the current workers (a crashed worker's replacement included)."""
        return self._core.pids()

    def shared_constant(self, x: Any) -> SharedConstant:
        """Share ``x`` with every worker once; pass the marker as a top-level task argument.

        Raises
        ------
        TypeError
            If ``x`` cannot be pickled and the start method is not ``fork``.
        """
        self._check_open()
        token = self._core.add_constant(x)
        marker = SharedConstant(x, _worker.ConstRef(token))
        marker.pool = self._core  # type: ignore[attr-defined]
        weakref.finalize(marker, self._core.drop_constant, token)
        return marker

    def _submit(self, fn: Any, args: tuple, kwargs: dict | None = None, *, label: str = "a task",
                slot: Any = None) -> Future:
        self._check_open()
        tokens = []
        plain = []
        for a in args:
            if isinstance(a, SharedConstant):
                if getattr(a, "pool", None) is self._core:
                    tokens.append(a.ref.token)
                    plain.append(a.ref)
                    continue
                a = a.value
            plain.append(a)
        try:
            inner = pickle.dumps((fn, tuple(plain), kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            raise TypeError(
                f"{label}: the task function and its arguments must be picklable to run in a "
                f"worker process ({type(err).__name__}: {err}); define functions and classes at "
                "module level (no lambdas, closures or local classes), or use WorkerThreadPool"
            ) from err
        return self._core.submit(inner, tokens, label, slot)

    def _new_ring(self, size: int) -> Any:
        ring = _shm.SlotRing(size)
        ring.on_close = self._core.forget_slots
        return ring

    def _cancel(self, futures: list) -> None:
        self._core.cancel(futures)

    def close(self) -> None:
        """Stop the workers (waiting up to a few seconds, then killing), free shared segments."""
        self._finalizer()


class _Task:
    __slots__ = ("id", "future", "inner", "tokens", "label", "slot", "ring", "worker")

    def __init__(self, tid: int, future: Future, inner: bytes, tokens: list, label: str, slot: Any) -> None:
        self.id, self.future, self.inner, self.tokens = tid, future, inner, tokens
        self.ring: Any
        self.slot: str | None
        self.ring, self.slot = slot if slot is not None else (None, None)
        self.label, self.worker = label, None


class _Worker:
    def __init__(self, wid: int, process: Any, tasks: Any, results: Any, inherited: set) -> None:
        self.wid, self.process, self.tasks, self.results = wid, process, tasks, results
        self.pid = process.pid
        self.inflight: dict = {}
        self.tokens: set = set()
        self.inherited = inherited
        self.retiring = False
        self.expected_exit = False
        self.replied = False
        self.queued = 0  # messages handed to the sender thread and not yet written
        self.pipe_size = _pipe_size(tasks)


class _Const:
    def __init__(self, inherit: bool, payload: bytes | None, segments: list) -> None:
        self.inherit, self.payload, self.segments = inherit, payload, segments
        self.users = 0
        self.dropped = False


class _ProcessCore:
    """Everything a process pool owns; holds no reference to the pool object."""

    def __init__(self, n: int, method: str) -> None:
        self.n, self.method = n, method
        self.ctx: Any = multiprocessing.get_context(method)
        self.lock = threading.RLock()
        self.closed = False
        self.workers: dict = {}
        self.pending: collections.deque = collections.deque()
        self.tasks: dict = {}
        self.constants: dict = {}
        self.ids = itertools.count()
        self.wids = itertools.count()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.broken: str | None = None
        self.startup_failures = 0
        try:
            self.wake_r, self.wake_w = os.pipe()
        except OSError as err:
            _raise_fd_error(err, "starting a process pool")
        os.set_blocking(self.wake_w, False)
        try:
            for _ in range(n):
                self._start_worker()
        except BaseException as err:
            self._abort_start()
            if isinstance(err, OSError):
                _raise_fd_error(err, f"starting {n} worker processes")
            raise
        tag = id(self)
        self.sender = threading.Thread(target=self._send_loop, name=f"batchup-process-pool-send-{tag}", daemon=True)
        self.collector = threading.Thread(target=self._collect_loop, name=f"batchup-process-pool-{tag}", daemon=True)
        self.sender.start()
        self.collector.start()
        _live_cores.add(self)

    # -- workers ----------------------------------------------------------------------------
    def _start_worker(self) -> None:
        wid = next(self.wids)
        task_r, task_w = self.ctx.Pipe(duplex=False)
        res_r, res_w = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=_worker.process_main,
            args=(task_r, res_w, os.getpid(), wid),
            name=f"batchup-worker-{wid}",
            daemon=True,
        )
        inherited = {t for t, c in self.constants.items() if c.inherit} if self.method == "fork" else set()
        proc.start()
        task_r.close()
        res_w.close()
        self.workers[wid] = _Worker(wid, proc, task_w, res_r, inherited)

    def _abort_start(self) -> None:
        """Undo a constructor that failed half-way: no worker or pipe stays behind."""
        for w in self.workers.values():
            w.process.kill()
            w.process.join(1.0)
            _close_quietly(w.tasks, w.results)
        self.workers.clear()
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def pids(self) -> list:
        with self.lock:
            return [w.pid for w in self.workers.values() if not w.retiring]

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    # -- constants ----------------------------------------------------------------------------
    def add_constant(self, x: Any) -> int:
        token = next(self.ids)
        try:
            payload, large, need = _shm.dump_constant(x, None)
            err = None
        except Exception as e:  # noqa: BLE001 - reported below unless fork inherits it
            payload, large, need, err = None, 0, 0, e
        if self.method == "fork" and (large or err is not None):
            const = _Const(True, None, [])
        elif err is not None:
            raise TypeError(
                f"the shared constant ({type(x).__name__}) must be picklable for the "
                f"{self.method!r} start method ({type(err).__name__}: {err}); define its functions "
                "and classes at module level (no lambdas, closures or local classes), or use the "
                "'fork' start method or WorkerThreadPool"
            ) from err
        else:
            segments: list = []
            if need:
                try:
                    payload, _, _ = _shm.dump_constant(x, segments, _shm.shm_dir(need))
                except BaseException:
                    _unlink_all(segments)  # no partial dump stays behind
                    raise
            const = _Const(False, payload, segments)
        with self.lock:
            if self.closed:
                _unlink_all(const.segments)
                raise PoolClosedError("WorkerProcessPool is closed; create a new pool")
            self.constants[token] = const
            if const.inherit:
                _worker.INHERITED[token] = x
                self._new_generation()
        self._wake()
        return token

    def _new_generation(self) -> None:
        """Retire every worker (after its current tasks) and fork fresh ones that inherit everything."""
        old = [w for w in self.workers.values() if not w.retiring]
        for w in old:
            w.retiring = True
            w.expected_exit = True
            self._post(w, _STOP)
        for _ in old:
            self._start_worker()

    def drop_constant(self, token: int) -> None:
        with self.lock:
            const = self.constants.get(token)
            if const is None:
                return
            const.dropped = True
            self._maybe_forget(token, const)

    def _maybe_forget(self, token: int, const: _Const) -> None:
        if not const.dropped or const.users:
            return
        del self.constants[token]
        _worker.INHERITED.pop(token, None)
        _unlink_all(const.segments)
        if self.closed:
            return
        drop = pickle.dumps(("drop", token))
        for w in self.workers.values():
            if token in w.tokens:
                w.tokens.discard(token)
                self._post(w, drop)

    def forget_slots(self, paths: list) -> None:
        """A stream's slot files are gone: workers unmap them (their memory is freed)."""
        with self.lock:
            if self.closed:
                return
            msg = pickle.dumps(("unmap", paths), protocol=pickle.HIGHEST_PROTOCOL)
            for w in self.workers.values():
                self._post(w, msg)

    # -- tasks ---------------------------------------------------------------------------------
    def submit(self, inner: bytes, tokens: list, label: str, slot: Any) -> Future:
        fut = Future(label)
        with self.lock:
            if self.closed:
                raise PoolClosedError("WorkerProcessPool is closed; create a new pool")
            if self.broken:
                raise WorkerCrashedError(self.broken)
            task = _Task(next(self.ids), fut, inner, tokens, label, slot)
            fut.task_id = task.id
            fut._abandon = self.abandon
            for t in tokens:
                self.constants[t].users += 1
            self.tasks[task.id] = task
            self.pending.append(task)
            self._dispatch()
        return fut

    def _dispatch(self) -> None:
        while self.pending:
            ready = [w for w in self.workers.values() if not w.retiring and len(w.inflight) < MAX_INFLIGHT]
            if not ready:
                return
            w = min(ready, key=lambda w: len(w.inflight))
            task = self.pending.popleft()
            out = []
            for t in task.tokens:
                if t not in w.tokens:
                    const = self.constants[t]
                    how = "inherit" if const.inherit else "pickle"
                    out.append(pickle.dumps(("const", t, how, const.payload), protocol=pickle.HIGHEST_PROTOCOL))
                    w.tokens.add(t)
            task.worker = w
            w.inflight[task.id] = task
            msg = ("task", task.id, task.slot, task.label, task.inner)
            out.append(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))
            self._send(w, task.id, out)

    def _send(self, w: _Worker, task_id: int, messages: list) -> None:
        """Write a task's messages to ``w`` (caller holds the lock).

        Small messages are written directly from this thread when nothing is
        on its way through the sender thread and the worker's pipe has room
        for them, so the write cannot block; anything else goes through the
        sender thread, in order.
        """
        need = sum(len(m) + 8 for m in messages)
        if need <= DIRECT_MAX and not w.queued and _unread(w.tasks) + need + _PIPE_SLACK <= w.pipe_size:
            try:
                for m in messages:
                    w.tasks.send_bytes(m)
            except (OSError, ValueError):
                pass  # the worker is gone; the collector reports it
            return
        for m in messages:
            self._post(w, m)

    def _post(self, w: _Worker, data: bytes) -> None:
        """Hand ``data`` for ``w`` to the sender thread (caller holds the lock)."""
        w.queued += 1
        self.outbox.put((w, data))

    def _finish(self, task: _Task) -> None:
        self.tasks.pop(task.id, None)
        if task.worker is not None:
            task.worker.inflight.pop(task.id, None)
        for t in task.tokens:
            const = self.constants.get(t)
            if const is not None:
                const.users -= 1
                self._maybe_forget(t, const)

    def cancel(self, futures: list) -> None:
        """Forget tasks whose results nobody will read (pending ones never run)."""
        with self.lock:
            for fut in futures:
                fut.cancelled = True
                task = self.tasks.get(fut.task_id)
                if task is not None and task.worker is None:
                    try:
                        self.pending.remove(task)
                    except ValueError:
                        pass
                    self._finish(task)

    def abandon(self, fut: Future) -> None:
        """A task timed out: stop the worker preparing it (a replacement starts)."""
        with self.lock:
            fut.cancelled = True
            task = self.tasks.get(fut.task_id)
            if task is None:
                return
            if task.worker is None:
                self.pending.remove(task)
                self._finish(task)
                return
            w = task.worker
            w.expected_exit = True
            try:
                os.kill(w.pid, signal.SIGKILL)
            except OSError:
                pass

    # -- the two threads ---------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            item = self.outbox.get()
            if item is None:
                return
            w, data = item
            try:
                w.tasks.send_bytes(data)
            except (OSError, ValueError):
                pass  # the worker is gone; the collector reports it
            with self.lock:
                w.queued -= 1

    def _collect_loop(self) -> None:
        try:
            while not self.closed:
                with self.lock:
                    by_obj = {}
                    for w in self.workers.values():
                        if not w.results.closed:
                            by_obj[w.results] = w
                        by_obj[w.process.sentinel] = w
                waitables = list(by_obj) + [self.wake_r]
                ready = multiprocessing.connection.wait(waitables, timeout=1.0)
                if self.closed:
                    return
                for obj in ready:
                    if obj == self.wake_r:
                        os.read(self.wake_r, 4096)
                    elif obj in by_obj and not isinstance(obj, int):
                        self._drain(by_obj[obj])
                for obj in ready:
                    if isinstance(obj, int) and obj != self.wake_r and obj in by_obj:
                        self._exited(by_obj[obj])
        except BaseException as err:  # pragma: no cover - an internal error must not hang callers
            self._fail_all(WorkerError(f"the process pool's collector thread failed: {err!r}"))
            raise

    def _drain(self, w: _Worker) -> None:
        while True:
            try:
                if not w.results.poll(0):
                    return
                raw = w.results.recv_bytes()
            except (EOFError, OSError):
                w.results.close()
                return
            msg = pickle.loads(raw)
            w.replied = True
            with self.lock:
                task = self.tasks.get(msg[1])
                if task is None:
                    continue
                self._finish(task)
                if not self.closed:
                    self._dispatch()
            fut = task.future
            if fut.cancelled:
                continue
            if msg[0] == "ok":
                fut.set_result((msg[2], msg[3], task.slot, task.ring), decode=_decode)
            else:
                fut.set_exception(rebuild_exception(*msg[2:]))

    def _exited(self, w: _Worker) -> None:
        w.process.join(0.5)
        self._drain(w)
        code = w.process.exitcode
        with self.lock:
            if self.workers.get(w.wid) is not w:
                return
            del self.workers[w.wid]
            _close_quietly(w.tasks, w.results)
            if self.closed:
                return
            held = sorted(w.inflight.values(), key=lambda t: t.id)
            w.inflight.clear()
            crashed = None
            if held and not w.expected_exit:
                crashed = held.pop(0)
            for task in reversed(held):
                task.worker = None
                if task.future.cancelled:
                    self._finish(task)
                else:
                    self.pending.appendleft(task)
            if not w.expected_exit:
                self.startup_failures = 0 if w.replied else self.startup_failures + 1
            if self.startup_failures > 2 * self.n:
                self.broken = (
                    f"the pool's workers keep dying before finishing a task (the last, pid {w.pid}, "
                    f"{describe_exit(code)}); under 'spawn'/'forkserver' the main module must be "
                    "importable and guarded by if __name__ == '__main__'; create a new pool"
                )
            elif not w.retiring and not _exiting:
                self._start_worker()
            if crashed is not None:
                self._finish(crashed)
            self._dispatch()
        if self.broken:
            self._fail_all(WorkerCrashedError(self.broken))
        if crashed is not None and not crashed.future.cancelled:
            crashed.future.set_exception(
                WorkerCrashedError(
                    f"worker {w.wid} (pid {w.pid}) {describe_exit(code)} while preparing "
                    f"{crashed.label}; {crash_hint(code)}"
                )
            )

    def _fail_all(self, error: BaseException) -> None:
        with self.lock:
            tasks = list(self.tasks.values())
            self.tasks.clear()
            self.pending.clear()
        for task in tasks:
            if not task.future.done():
                task.future.set_exception(error)

    # -- shutdown -----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            workers = list(self.workers.values())
        self._fail_all(PoolClosedError("the pool was closed before this task finished"))
        for w in workers:
            self.outbox.put((w, _STOP))
        self.outbox.put(None)
        self._wake()
        me = threading.current_thread()
        deadline = time.monotonic() + CLOSE_TIMEOUT
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            if w.process.exitcode is None:
                w.process.kill()
        for w in workers:
            w.process.join(1.0)
            _close_quietly(w.tasks, w.results)
            try:
                w.process.close()
            except ValueError:
                pass
        for t in (self.sender, self.collector):
            if t is not me:
                t.join(1.0)
        with self.lock:
            for token, const in list(self.constants.items()):
                _worker.INHERITED.pop(token, None)
                _unlink_all(const.segments)
            self.constants.clear()
            self.workers.clear()
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        _live_cores.discard(self)


def _pipe_size(conn: Any) -> int:
    """Return the capacity of the pipe behind ``conn`` (0 where it cannot be known)."""
    try:
        import fcntl

        return int(fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_GETPIPE_SZ", 1032)))
    except (ImportError, OSError, ValueError):
        return 0


def _unread(conn: Any) -> int:
    """Return the bytes written to ``conn``'s pipe and not yet read by the worker."""
    try:
        import fcntl
        import termios

        return struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except (ImportError, OSError, ValueError):
        return 1 << 30


def _raise_fd_error(err: OSError, what: str) -> None:
    better = fd_limit_error(err, what)
    if better is err:
        raise err
    raise better from err


def _decode(raw: tuple) -> Any:
    skeleton, nbytes, slot, ring = raw
    return _shm.load_result(skeleton, nbytes, slot, ring)


def _close_quietly(*conns: Any) -> None:
    for c in conns:
        try:
            c.close()
        except OSError:
            pass


def _unlink_all(paths: list) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass


_exiting = False


@atexit.register
def _close_all_at_exit() -> None:
    # Registered after multiprocessing's own hook, so it runs first: workers get a clean stop.
    global _exiting
    _exiting = True
    for core in list(_live_cores):
        core.shutdown()
    sys.stdout.flush()
