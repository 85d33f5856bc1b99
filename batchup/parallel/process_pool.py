"""WorkerProcessPool: worker processes that never hang, never leak and never serve stale data.

The pool starts its workers at construction and runs two small threads in
the parent: a *collector* that waits on every worker's result pipe and on
every way a worker can end (so a dead worker is noticed at once, not at the
next timeout), and a *sender* that writes tasks to the workers' pipes (so a
full pipe never blocks the collector). Each worker holds at most
:data:`MAX_INFLIGHT` tasks; the parent knows exactly which tasks a worker
held when it ended, fails the one it was preparing with
:class:`~batchup.parallel.errors.WorkerCrashedError` (naming the pid and the
signal or exit code), re-queues the rest and starts a replacement.

**Snapshots.** Workers see a shared constant (the data source) as it was
when :meth:`WorkerProcessPool.shared_constant` was called, whatever the
parent changes afterwards. A picklable constant without large arrays is
pickled then. Under ``fork`` a constant that holds large arrays (or cannot be
pickled) is *inherited*: the pool forks a template process at that moment
(:mod:`batchup.parallel._template`) and a *generation* of workers from it;
every task that uses the constant runs in that generation, whose
replacements come from the same template. Under ``spawn``/``forkserver``
large arrays are copied once into a shared segment (a ``np.memmap`` opened
``r``, ``r+`` or ``w+`` travels as its file name instead).
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
import select
import struct
import sys
import threading
import time
import warnings
import weakref
from typing import Any

from batchup.parallel import _shm, _start_method, _worker
from batchup.parallel._shm import close_quietly
from batchup.parallel._template import Template, check_fd_headroom
from batchup.parallel.errors import (
    PoolClosedError,
    WorkerCrashedError,
    WorkerError,
    crash_hint,
    describe_exit,
    fd_limit_error,
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
_live_cores: weakref.WeakSet[_ProcessCore] = weakref.WeakSet()
_STOP = pickle.dumps(("stop",))
_pool_ids = itertools.count()
_fork_lock = threading.Lock()


class WorkerProcessPool(AbstractWorkerPool):
    """Run tasks in ``processes`` worker processes, all started at construction.

    Parameters
    ----------
    processes : int, default 1
        Number of worker processes (>= 1).
    start_method : {'fork', 'forkserver', 'spawn'}, optional
        Keyword-only. By default ``'fork'`` on Linux when no other thread
        could hold a lock the workers need (see
        :mod:`batchup.parallel._start_method`), else ``'forkserver'``;
        elsewhere the platform's default. ``'fork'`` shares in-memory arrays
        copy-on-write and accepts lambdas in a data source;
        ``'spawn'``/``'forkserver'`` need everything picklable and defined
        at module level.

    Raises
    ------
    TypeError
        If ``processes`` is not an int.
    ValueError
        If ``processes < 1`` or ``start_method`` is unknown.
    RuntimeError
        If called inside a worker process of another pool.
    OSError
        If the workers cannot be started (for example too many open files:
        the message says how to raise ``ulimit -n``); nothing is left running.

    Notes
    -----
    Tasks, their arguments and results must be picklable (except shared
    constants under ``fork``). Results of streams come back through
    shared-memory slots owned by the parent; a batch's arrays are views of
    a private mapping handed over when the result is retrieved (no copy).
    Workers ignore SIGINT and exit by themselves if the parent dies. A
    crashed worker is replaced, so the pool stays usable; its pids are
    :meth:`worker_pids`.

    Examples
    --------
    >>> import operator
    >>> with WorkerProcessPool(processes=2) as pool:
    ...     print(pool._apply_async(operator.mul, (6, 7)).get())
    42
    """

    def __init__(self, processes: int = 1, *, start_method: str | None = None) -> None:
        if _worker.IN_WORKER:
            raise RuntimeError(
                "a WorkerProcessPool cannot be created inside a worker process of another pool; "
                "inside a task use WorkerThreadPool, or InlinePool (num_workers=0)"
            )
        self.num_workers = self.processes = check_processes(processes)
        self.start_method = _start_method.choose_start_method(start_method)
        reason = [] if start_method is not None else _start_method.fork_hazards()
        _shm.sweep_stale()
        self._core = _ProcessCore(self.processes, self.start_method, explicit=start_method is not None, reason=reason)
        self._finalizer = weakref.finalize(self, self._core.shutdown)

    @property
    def closed(self) -> bool:
        return self._core.closed

    def worker_pids(self) -> list:
        """Return the pids of the current workers (a crashed worker's replacement included).

        Returns
        -------
        list of int
            One process id per worker, ``processes`` in all.
        """
        return self._core.pids()

    def shared_constant(self, x: Any) -> SharedConstant:
        """Share ``x`` with every worker once; pass the marker as a top-level task argument.

        Workers see ``x`` as it is now (a snapshot), whatever the caller
        changes in it later.

        Parameters
        ----------
        x : object
            The value, typically a large array every task reads. Large NumPy
            arrays in it are staged in shared memory (or inherited, under
            ``fork``); the rest is pickled once.

        Returns
        -------
        SharedConstant
            The marker to pass as a top-level positional task argument; the
            task function receives the value. The copy is freed when the
            marker is garbage-collected.

        Raises
        ------
        TypeError
            If ``x`` cannot be pickled and the start method is not ``fork``.
        """
        self._check_open()
        key = self._core.add_constant(x)
        marker = SharedConstant(x, _worker.ConstRef(key))
        marker.pool = self._core
        weakref.finalize(marker, self._core.drop_constant, key)
        return marker

    def _submit(self, fn: Any, args: tuple, kwargs: dict | None = None, *, label: str = "a task",
                slot: Any = None) -> Future:
        self._check_open()
        keys = []
        plain = []
        for a in args:
            if isinstance(a, SharedConstant):
                if getattr(a, "pool", None) is self._core:
                    keys.append(a.ref.token)
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
        return self._core.submit(inner, keys, label, slot)

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
    __slots__ = ("id", "future", "inner", "keys", "label", "slot", "ring", "worker", "gen")

    def __init__(self, tid: int, future: Future, inner: bytes, keys: list, label: str, slot: Any, gen: Any) -> None:
        self.id, self.future, self.inner, self.keys, self.gen = tid, future, inner, keys, gen
        self.ring: Any
        self.slot: str | None
        self.ring, self.slot = slot if slot is not None else (None, None)
        self.label, self.worker = label, None


class _Worker:
    def __init__(self, wid: int, gen: _Generation, pid: int, process: Any, tasks: Any, results: Any) -> None:
        self.wid, self.gen, self.pid, self.process = wid, gen, pid, process
        self.tasks, self.results = tasks, results
        self.inflight: dict = {}
        self.keys: set = set()  # constants sent to this worker
        self.retiring = False
        self.expected_exit = False
        self.ready = False  # it said it started (a later death is a task's doing)
        self.queued = 0  # messages handed to the sender thread and not yet written
        self.pipe_size = _pipe_size(tasks)


class _Generation:
    """Workers made from one snapshot: one template under ``fork`` (none otherwise)."""

    def __init__(self, gid: int, template: Template | None) -> None:
        self.gid, self.template = gid, template
        self.workers: dict = {}
        self.retiring = False


class _Const:
    def __init__(self, inherit: bool, payload: bytes | None, segments: list) -> None:
        self.inherit, self.payload, self.segments = inherit, payload, segments
        self.gen: _Generation | None = None
        self.users = 0
        self.dropped = False


class _ProcessCore:
    """Everything a process pool owns; holds no reference to the pool object."""

    def __init__(self, n: int, method: str, *, explicit: bool = True, reason: list | None = None) -> None:
        self.n, self.method, self.explicit, self.reason = n, method, explicit, reason or []
        self.uid = f"{os.getpid()}-{next(_pool_ids)}"
        self.ctx: Any = multiprocessing.get_context(method)
        if method == "forkserver":
            _preload_worker_module(self.ctx)
        self.lock = threading.RLock()
        self.closed = False
        self.gens: dict = {}
        self.by_pid: dict = {}  # pid -> worker, for exits reported by a template
        self.pending: collections.deque = collections.deque()
        self.tasks: dict = {}
        self.constants: dict = {}
        self.ids = itertools.count()
        self.wids = itertools.count()
        self.gids = itertools.count()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.broken: str | None = None
        self.closing: list = []  # templates of retired generations, stopped by the collector
        # Recent worker starts: True when a worker said it was ready, False when one died before.
        # A task that kills its worker (a bad sample) does not count: only a start method that
        # cannot start workers (an unguarded main module under spawn) breaks the pool.
        self.health: collections.deque = collections.deque(maxlen=2 * n + 1)
        self.wake_r, self.wake_w = -1, -1
        try:
            self.wake_r, self.wake_w = os.pipe()
            os.set_blocking(self.wake_w, False)
            self.newest = self._new_generation()
        except BaseException as err:
            self._abort_start()
            if isinstance(err, OSError):
                _raise_fd_error(err, f"starting {n} worker processes")
            raise
        tag = self.uid
        self.sender = threading.Thread(target=self._send_loop, name=f"batchup-process-pool-send-{tag}", daemon=True)
        self.collector = threading.Thread(target=self._collect_loop, name=f"batchup-process-pool-{tag}", daemon=True)
        for t in (self.sender, self.collector):
            t.start()
            _start_method.register_service_thread(t)
        _live_cores.add(self)

    # -- generations and workers ------------------------------------------------------------------
    def _new_generation(self) -> _Generation:
        """Start a generation of ``n`` workers (under ``fork``, from a template forked now)."""
        template = None
        if self.method == "fork":
            with _fork_lock, warnings.catch_warnings():
                if not _start_method.fork_hazards():
                    # Python 3.12+ warns about any other thread; ours and BLAS's are safe to fork beside.
                    warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
                template = Template(self.ctx, self.uid)
        gen = _Generation(next(self.gids), template)
        self.gens[gen.gid] = gen
        try:
            for _ in range(self.n):
                self._start_worker(gen)
        except BaseException:
            self._stop_generation(gen)
            raise
        return gen

    def _start_worker(self, gen: _Generation) -> None:
        wid = next(self.wids)
        if gen.template is None:
            task_r, task_w = self.ctx.Pipe(duplex=False)
            try:
                res_r, res_w = self.ctx.Pipe(duplex=False)
            except BaseException:
                close_quietly(task_r, task_w)
                raise
            proc = self.ctx.Process(
                target=_worker.process_main, args=(task_r, res_w, os.getpid(), wid, self.uid),
                name=f"batchup-worker-{wid}", daemon=True,
            )
            try:
                check_fd_headroom()
                proc.start()
            except BaseException:
                close_quietly(task_w, res_r)
                raise
            finally:
                close_quietly(task_r, res_w)
            w = _Worker(wid, gen, proc.pid, proc, task_w, res_r)
        else:
            fds: list = []
            try:
                fds += os.pipe()
                fds += os.pipe()
                pid = gen.template.fork_worker(wid, fds[0], fds[3])
            except BaseException:
                close_quietly(*fds)
                raise
            close_quietly(fds[0], fds[3])
            tasks = multiprocessing.connection.Connection(fds[1], readable=False)
            results = multiprocessing.connection.Connection(fds[2], writable=False)
            w = _Worker(wid, gen, pid, None, tasks, results)
            self.by_pid[pid] = w
        gen.workers[wid] = w

    def _stop_generation(self, gen: _Generation) -> None:
        """Forget ``gen`` (no collector watches it): kill its workers, stop its template."""
        for w in list(gen.workers.values()):
            if w.process is not None:
                w.process.kill()
                w.process.join(1.0)
                try:
                    w.process.close()
                except ValueError:
                    pass
            close_quietly(w.tasks, w.results)
            self.by_pid.pop(w.pid, None)
        gen.workers.clear()
        if gen.template is not None:
            gen.template.close()  # it kills any worker still running
        self.gens.pop(gen.gid, None)

    def _abort_start(self) -> None:
        """Undo a constructor that failed half-way: no worker, template or pipe stays behind."""
        for gen in list(self.gens.values()):
            self._stop_generation(gen)
        close_quietly(self.wake_r, self.wake_w)

    def _all_workers(self) -> list:
        return [w for g in self.gens.values() for w in g.workers.values()]

    def pids(self) -> list:
        with self.lock:
            return [w.pid for w in sorted(self._all_workers(), key=lambda w: w.wid) if not w.retiring]

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def _retire_if_unused(self, gen: _Generation) -> None:
        """Retire ``gen`` once no live inherited constant needs its snapshot and it is not the newest."""
        if gen is self.newest or gen.retiring:
            return
        if any(c.gen is gen for c in self.constants.values()):
            return
        gen.retiring = True
        for w in gen.workers.values():
            if not w.retiring:
                w.retiring = w.expected_exit = True
                self._post(w, _STOP)
        if not gen.workers:
            self._close_template_later(gen)

    def _close_template_later(self, gen: _Generation) -> None:
        """Forget a retired generation; the collector (the one thread watching its fds) stops its template."""
        self.gens.pop(gen.gid, None)
        if gen.template is not None:
            self.closing.append(gen.template)
            self._wake()

    def _close_templates(self) -> None:
        with self.lock:
            templates, self.closing = self.closing, []
        for t in templates:
            t.close()

    # -- constants ----------------------------------------------------------------------------------
    def add_constant(self, x: Any) -> tuple:
        key = (self.uid, next(self.ids))
        try:
            payload, large, need = _shm.dump_constant(x, None)
            err = None
        except Exception as e:  # noqa: BLE001 - reported below unless fork inherits it
            payload, large, need, err = None, 0, 0, e
        inherit = self.method == "fork" and (large or err is not None)
        if inherit and err is None and not self.explicit and _start_method.fork_hazards():
            inherit = False  # threads appeared since the pool started: copy once rather than fork now
        if inherit:
            const = _Const(True, None, [])
        elif err is not None:
            raise TypeError(
                f"the shared constant ({type(x).__name__}) must be picklable for the "
                f"{self.method!r} start method{self._why_method()} ({type(err).__name__}: {err}); "
                "define its functions and classes at module level (no lambdas, closures or local "
                "classes), or use WorkerThreadPool"
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
            if const.inherit:
                _worker.INHERITED[key] = x
                try:
                    gen = self._new_generation()
                except BaseException as e:
                    _worker.INHERITED.pop(key, None)
                    if isinstance(e, OSError):
                        _raise_fd_error(e, f"starting {self.n} worker processes for a shared source")
                    raise
                old, self.newest, const.gen = self.newest, gen, gen
                self.constants[key] = const
                self._retire_if_unused(old)
            else:
                self.constants[key] = const
        self._wake()
        return key

    def _why_method(self) -> str:
        if self.explicit or not self.reason:
            return ""
        shown = ", ".join(self.reason[:3]) + (", ..." if len(self.reason) > 3 else "")
        return (
            f" (chosen because other threads run in this process, which makes 'fork' unsafe: {shown}; "
            "pass start_method='fork' to override at your own risk)"
        )

    def drop_constant(self, key: tuple) -> None:
        with self.lock:
            const = self.constants.get(key)
            if const is None:
                return
            const.dropped = True
            self._maybe_forget(key, const)

    def _maybe_forget(self, key: tuple, const: _Const) -> None:
        if not const.dropped or const.users:
            return
        del self.constants[key]
        _worker.INHERITED.pop(key, None)
        _unlink_all(const.segments)
        if self.closed:
            return
        if const.gen is not None:
            self._retire_if_unused(const.gen)
        drop = pickle.dumps(("drop", key))
        for w in self._all_workers():
            if key in w.keys:
                w.keys.discard(key)
                self._post(w, drop)

    def forget_slots(self, paths: list) -> None:
        """A stream's slot files are gone: workers unmap them (their memory is freed)."""
        with self.lock:
            if self.closed:
                return
            msg = pickle.dumps(("unmap", paths), protocol=pickle.HIGHEST_PROTOCOL)
            for w in self._all_workers():
                self._post(w, msg)

    # -- tasks -----------------------------------------------------------------------------------------
    def submit(self, inner: bytes, keys: list, label: str, slot: Any) -> Future:
        fut = Future(label)
        with self.lock:
            if self.closed:
                raise PoolClosedError("WorkerProcessPool is closed; create a new pool")
            if self.broken:
                raise WorkerCrashedError(self.broken)
            gens = {self.constants[k].gen for k in keys if self.constants[k].gen is not None}
            if len(gens) > 1:
                raise ValueError(
                    f"{label}: a task cannot use two large shared constants shared at different times "
                    "under 'fork' (each is a snapshot of its own moment); share them as one constant"
                )
            task = _Task(next(self.ids), fut, inner, keys, label, slot, gens.pop() if gens else None)
            fut.task_id = task.id
            fut._abandon = self.abandon
            for k in keys:
                self.constants[k].users += 1
            self.tasks[task.id] = task
            self.pending.append(task)
            self._dispatch()
        return fut

    def _dispatch(self) -> None:
        waiting: collections.deque = collections.deque()
        while self.pending:
            task = self.pending.popleft()
            gen = task.gen or self.newest
            ready = [w for w in gen.workers.values() if not w.retiring and len(w.inflight) < MAX_INFLIGHT]
            if not ready:
                waiting.append(task)
                continue
            w = min(ready, key=lambda w: len(w.inflight))
            out = []
            for k in task.keys:
                if k not in w.keys:
                    const = self.constants[k]
                    how = "inherit" if const.inherit else "pickle"
                    out.append(pickle.dumps(("const", k, how, const.payload), protocol=pickle.HIGHEST_PROTOCOL))
                    w.keys.add(k)
            task.worker = w
            w.inflight[task.id] = task
            msg = ("task", task.id, task.slot, task.label, task.inner)
            out.append(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))
            self._send(w, out)
        self.pending = waiting

    def _send(self, w: _Worker, messages: list) -> None:
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
        for k in task.keys:
            const = self.constants.get(k)
            if const is not None:
                const.users -= 1
                self._maybe_forget(k, const)

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
            self._kill(w)

    def _kill(self, w: _Worker) -> None:
        if w.process is not None:
            try:
                w.process.kill()
            except (OSError, ValueError):
                pass
        elif w.gen.template is not None:
            w.gen.template.kill(w.pid)

    # -- the two threads -------------------------------------------------------------------------------
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
                self._close_templates()
                with self.lock:
                    if self.closed:
                        return
                    watch: dict = {self.wake_r: ("wake", None)}
                    for g in self.gens.values():
                        if g.template is not None:
                            watch[g.template.events] = ("exits", g)
                            watch[g.template.process.sentinel] = ("template", g)
                        for w in g.workers.values():
                            if not w.results.closed:
                                watch[w.results] = ("result", w)
                            if w.process is not None:
                                watch[w.process.sentinel] = ("sentinel", w)
                ready = multiprocessing.connection.wait(list(watch), timeout=1.0)
                if self.closed:
                    return
                ended = []
                for obj in ready:
                    kind, target = watch[obj]
                    if kind == "wake":
                        os.read(self.wake_r, 4096)
                    elif kind == "result":
                        self._drain(target)
                    elif kind == "sentinel":
                        ended.append((target, None))
                    elif kind == "exits":
                        with self.lock:
                            ended += [(self.by_pid.pop(pid), code) for pid, code in target.template.read_exits()
                                      if pid in self.by_pid]
                    else:
                        self._template_died(target)
                for w, code in ended:
                    self._exited(w, code)
        except BaseException as err:  # pragma: no cover - an internal error must not hang callers
            self._fail_all(WorkerError(f"the process pool's collector thread failed: {err!r}"))
            if not self.closed:  # closing may pull a descriptor from under wait(): not an error then
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
            with self.lock:
                if msg[0] == "ready":
                    w.ready = True
                    self.health.append(True)
                    continue
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
                fut.set_result((msg, task.slot, task.ring), decode=_decode)
            else:
                # Rebuilt in the consumer's thread: unpickling may import, which this thread never does.
                fut.set_remote_exception(msg[2:])

    def _exited(self, w: _Worker, code: int | None) -> None:
        if w.process is not None:
            w.process.join(0.5)
            code = w.process.exitcode
        self._drain(w)
        with self.lock:
            gen = w.gen
            if gen.workers.get(w.wid) is not w:
                return
            del gen.workers[w.wid]
            self.by_pid.pop(w.pid, None)
            close_quietly(w.tasks, w.results)
            if w.process is not None:
                try:
                    w.process.close()
                except ValueError:
                    pass
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
            if not w.expected_exit and not w.ready:
                self.health.append(False)
            if len(self.health) == self.health.maxlen and not any(self.health):
                self.broken = self._broken_message(w, code)
            elif not w.retiring and not gen.retiring and not _exiting:
                try:
                    self._start_worker(gen)
                except OSError as err:
                    self.broken = f"the pool could not replace a worker: {fd_limit_error(err, 'replacing a worker')}"
            if gen.retiring and not gen.workers:
                self._close_template_later(gen)
            if crashed is not None:
                self._finish(crashed)
            self._dispatch()
        if self.broken:
            self._fail_all(WorkerCrashedError(self.broken))
        if crashed is not None and not crashed.future.cancelled:
            crashed.future.set_exception(
                WorkerCrashedError(
                    f"worker {w.wid} (pid {w.pid}) {describe_exit(code)} while preparing "
                    f"{crashed.label}; {crash_hint(code, self.method if not w.ready else None)}"
                )
            )

    def _broken_message(self, w: _Worker, code: int | None) -> str:
        text = (
            f"the pool's last {self.health.maxlen} new workers all died while starting (the last, "
            f"pid {w.pid}, {describe_exit(code)}); "
        )
        if self.method == "fork":
            text += "look for a crash in native code or the out-of-memory killer; "
        else:
            text += (
                f"under {self.method!r} the main module must be importable and guarded by "
                "if __name__ == '__main__', and every function the workers need defined at module level; "
            )
        return text + "create a new pool"

    def _template_died(self, gen: _Generation) -> None:
        if self.closed:
            return
        code = gen.template.process.exitcode if gen.template is not None else None
        with self.lock:
            if self.gens.get(gen.gid) is not gen or gen.retiring:
                return
            pid = gen.template.pid if gen.template is not None else None
            self.broken = (
                f"the pool's worker template (pid {pid}) {describe_exit(code)}, and the workers forked "
                "from it with it; create a new pool"
            )
        self._fail_all(WorkerCrashedError(self.broken))

    def _fail_all(self, error: BaseException) -> None:
        with self.lock:
            tasks = list(self.tasks.values())
            self.tasks.clear()
            self.pending.clear()
        for task in tasks:
            if not task.future.done():
                task.future.set_exception(error)

    # -- shutdown -----------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            workers = self._all_workers()
            gens = list(self.gens.values())
        self._fail_all(PoolClosedError("the pool was closed before this task finished"))
        for w in workers:
            self.outbox.put((w, _STOP))
        self.outbox.put(None)
        self._wake()
        me = threading.current_thread()
        for t in (self.sender, self.collector):
            if t is not me:
                t.join(1.0)
            _start_method.unregister_service_thread(t)
        deadline = time.monotonic() + CLOSE_TIMEOUT
        _wait_exits(workers, gens, deadline)
        self._close_templates()
        with self.lock:
            for gen in gens:
                self._stop_generation(gen)
            for key, const in list(self.constants.items()):
                _worker.INHERITED.pop(key, None)
                _unlink_all(const.segments)
            self.constants.clear()
        close_quietly(self.wake_r, self.wake_w)
        _live_cores.discard(self)


def _wait_exits(workers: list, gens: list, deadline: float) -> None:
    """Wait until ``deadline`` for the stopped ``workers`` to exit (the caller kills the rest)."""
    for w in workers:
        if w.process is not None:
            w.process.join(max(0.0, deadline - time.monotonic()))
    for gen in gens:
        if gen.template is None:
            continue
        left = {w.pid for w in workers if w.gen is gen}
        while left and time.monotonic() < deadline:
            select.select([gen.template.events], [], [], min(0.1, max(0.0, deadline - time.monotonic())))
            left -= {pid for pid, _ in gen.template.read_exits()}
            if not gen.template.process.is_alive():
                break


def _preload_worker_module(ctx: Any) -> None:
    """Have the fork server import batchup's worker module once, so each worker starts in ~0.1 s, not ~1 s.

    Python <= 3.12 does not preload ``__main__`` into the fork server as
    documented, so without this every worker imports NumPy and batchup
    again. Only takes effect before the fork server starts; the modules
    already requested are kept.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    current = getattr(server, "_preload_modules", None)
    if not isinstance(current, list) or "batchup.parallel._worker" in current:
        return
    if getattr(server, "_forkserver_pid", None) is None:
        ctx.set_forkserver_preload(current + ["batchup.parallel._worker"])


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
    msg, slot, ring = raw
    result = _shm.load_result(msg[2], msg[3], slot, ring)
    if len(msg) > 4:  # a profiled task (batchup._profile.Timed): the seconds its worker spent writing it
        result.timings[3] = msg[4]
    return result


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

