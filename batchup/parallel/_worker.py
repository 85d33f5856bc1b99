"""Worker loops: module-level functions run inside pool threads and processes.

A process worker reads messages from its pipe: a shared constant to cache,
a task to run, or ``stop``. It answers every task with either ``("ok", ...)``
(the result, its arrays written to the task's shared-memory slot) or
``("err", ...)`` (the exception pickled if possible, plus its formatted
traceback naming the worker pid and the batch). It ignores SIGINT (Ctrl-C is
the parent's business) and exits by itself when the parent dies.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback
from typing import Any

from batchup._profile import Timed, run_timed
from batchup.parallel import _shm
from batchup.parallel.errors import StagingSpaceError, exception_payload

__all__ = ["ConstRef", "fetch_batch", "fetch_batch_timed", "format_failure", "process_main", "run_call"]

#: Objects shared by ``fork`` inheritance: ``(pool id, token)`` -> object, filled in the
#: parent before the pool forks the template its workers come from. The pool id is unique
#: across the process's life and across forks, so no pool can find another pool's entry.
INHERITED: dict = {}
#: Set in a process worker: a process pool must not be created inside one.
IN_WORKER = False
_READY = pickle.dumps(("ready", -1))
#: How often an idle worker checks that its parent is still alive (seconds).
WATCHDOG_PERIOD = 0.2


class ConstRef:
    """Stands for the shared constant ``token`` (``(pool id, number)``) inside a task's arguments."""

    __slots__ = ("token",)

    def __init__(self, token: tuple) -> None:
        self.token = token

    def __reduce__(self) -> tuple:
        return ConstRef, (self.token,)

    def __repr__(self) -> str:
        return f"ConstRef({self.token})"


def fetch_batch(source: Any, indices: Any, batch_number: int) -> Any:
    """Return ``source.fetch_batch(indices, batch_number)`` (the task of a parallel source).

    The batch number travels with the task, so a seeded map derives the same
    generator whichever worker makes the batch.
    """
    return source.fetch_batch(indices, batch_number)


def fetch_batch_timed(source: Any, indices: Any, batch_number: int) -> Timed:
    """Return :func:`fetch_batch`'s batch with its timings (the task of a profiled parallel source)."""
    return run_timed(source.fetch_batch, indices, batch_number)


def run_call(fn: Any, args: tuple, kwargs: dict | None) -> Any:
    return fn(*args, **kwargs) if kwargs else fn(*args)


def format_failure(exc: BaseException, where: str) -> str:
    """Return the traceback text of ``exc`` headed by where it happened."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{where}\n{text}"


def _watch_parent(parent_pid: int) -> None:
    # Under 'forkserver' the direct parent is the fork server, not the pool's process: watch
    # both (the fork server exits when the pool's process dies, so the ppid changes too).
    first_ppid = os.getppid()
    while True:
        time.sleep(WATCHDOG_PERIOD)
        if os.getppid() != first_ppid or not _shm.pid_alive(parent_pid):
            os._exit(0)


def inherited(key: tuple, pool_uid: str) -> Any:
    """Return the inherited constant ``key`` for a worker of pool ``pool_uid``; raise if it is not there.

    A worker never serves another pool's object: the key names its pool, and
    a missing entry (the worker was forked before the constant was shared) is
    an error, not a fallback.
    """
    if not isinstance(key, tuple) or key[0] != pool_uid:
        raise RuntimeError(f"shared constant {key!r} belongs to another pool than this worker's ({pool_uid})")
    try:
        return INHERITED[key]
    except KeyError:
        raise RuntimeError(
            f"shared constant {key!r} is not in this worker's inherited table (the worker was forked "
            "before it was shared); this is a bug in batchup, please report it"
        ) from None


def _reseed_global_rngs() -> None:
    # Forked workers inherit the parent's global RNG states; make them differ per worker so
    # augmentation written with np.random / random does not repeat across workers.
    import random

    import numpy as np

    seed = int.from_bytes(os.urandom(4), "little")
    random.seed(seed)
    np.random.seed(seed)


def process_main(tasks: Any, results: Any, parent_pid: int, worker_id: int, pool_uid: str) -> None:
    """Run a process worker until ``stop``, EOF, or the parent's death."""
    global IN_WORKER
    IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="batchup-watchdog", daemon=True).start()
    _reseed_global_rngs()
    pid = os.getpid()
    cache: dict = {}
    try:
        results.send_bytes(_READY)  # started: a death from now on is a task's, not the start method's
    except (EOFError, OSError):
        return
    while True:
        try:
            raw = tasks.recv_bytes()
        except (EOFError, OSError):
            break
        msg = pickle.loads(raw)
        kind = msg[0]
        if kind == "stop":
            break
        if kind == "const":
            _, token, how, payload = msg
            try:
                cache[token] = inherited(token, pool_uid) if how == "inherit" else _shm.load_constant(payload)
            except Exception as exc:  # noqa: BLE001 - reported with the first task that needs it
                where = f"in worker {worker_id} (pid {pid}), loading a shared constant"
                cache[token] = _Broken(exc, format_failure(exc, where))
            continue
        if kind == "drop":
            cache.pop(msg[1], None)
            continue
        if kind == "unmap":
            _shm.forget(msg[1])
            continue
        _, task_id, slot, label, inner = msg
        where = f"in worker {worker_id} (pid {pid}), while preparing {label}"
        try:
            fn, args, kwargs = pickle.loads(inner)
            args = tuple(_resolve(a, cache) for a in args)
            result = run_call(fn, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
            reply = _error(task_id, exc, where)
        else:
            try:
                timed = type(result) is Timed
                t0 = time.perf_counter() if timed else 0.0
                skeleton, nbytes = _shm.dump_result(result, slot)
                ok: tuple = ("ok", task_id, skeleton, nbytes)
                if timed:  # profiled: the seconds spent writing the batch travel back with it
                    ok += (time.perf_counter() - t0,)
                reply = pickle.dumps(ok, protocol=pickle.HIGHEST_PROTOCOL)
            except StagingSpaceError as exc:
                reply = _error(task_id, exc, where)
            except Exception as exc:  # noqa: BLE001
                reply = _error(task_id, exc, where, f"the result of {label} could not be pickled: ")
            del result
        try:
            results.send_bytes(reply)
        except (EOFError, OSError):
            break
    sys.stdout.flush()


class _Broken:
    def __init__(self, exc: BaseException, text: str) -> None:
        self.exc, self.text = exc, text


def _resolve(arg: Any, cache: dict) -> Any:
    if isinstance(arg, ConstRef):
        value = cache[arg.token]
        if isinstance(value, _Broken):
            raise RuntimeError(f"the shared constant could not be loaded in this worker:\n{value.text}")
        return value
    return arg


def _error(task_id: int, exc: BaseException, where: str, prefix: str = "") -> bytes:
    text = format_failure(exc, where)
    payload = None if prefix else exception_payload(exc)
    msg = ("err", task_id, payload, prefix + type(exc).__qualname__, str(exc), text)
    return pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)


def call_captured(fn: Any, label: str, kwargs: dict | None, *args: Any) -> tuple:
    """Run ``fn(*args, **kwargs)`` where exceptions cannot travel well (joblib/Dask workers).

    Return ``("ok", value)`` or ``("err", payload, type name, message, traceback text)``.
    """
    try:
        return ("ok", run_call(fn, args, kwargs))
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
        where = f"in worker process {os.getpid()} ({_host()}), while preparing {label}"
        return ("err", exception_payload(exc), type(exc).__qualname__, str(exc), format_failure(exc, where))


def _host() -> str:
    import socket

    return socket.gethostname()
