"""Which start method a process pool uses: ``fork`` where it is safe, ``forkserver`` otherwise.

Forking copies only the calling thread. A lock another thread holds at that
moment (an import lock, a logging or stdout lock, a lock of a runtime such as
JAX's) stays locked for ever in the child, and the child hangs the first time
it needs it. So ``fork`` is safe only while no such thread runs. Python 3.12+
warns when it forks a multi-threaded process, and Python 3.14 makes
``forkserver`` the default on Linux.

The rule used when ``start_method`` is not given:

* ``fork`` on Linux when the only threads besides the calling one are
  batchup's own pool service threads (which take no lock a worker needs) or
  unnamed native threads (the worker threads of BLAS and OpenMP libraries,
  which re-create themselves in the child; NumPy starts one per core at
  import);
* otherwise ``forkserver`` (where available, else ``spawn``): any other
  Python thread (tqdm's monitor, a notebook kernel's threads, a thread pool,
  a thread that is importing a module) or a native thread its library named
  (JAX/XLA, CUDA, gRPC) makes forking unsafe.

Outside Linux the default is the platform's own (``spawn`` on macOS and
Windows).
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from typing import Any

__all__ = ["check_start_method", "choose_start_method", "fork_hazards", "register_service_thread"]

START_METHODS = ("fork", "forkserver", "spawn")
#: Native ids of batchup's own pool service threads (safe to fork beside: no imports, no shared locks).
_service_threads: set = set()
_service_lock = threading.Lock()


def available_methods() -> list:
    return [m for m in multiprocessing.get_all_start_methods() if m in START_METHODS]


def check_start_method(start_method: Any) -> None:
    """Raise unless ``start_method`` is ``None`` or a start method of this platform.

    Called for every pool kind (threads and ``num_workers=0`` included), so a
    typo never passes silently.

    Raises
    ------
    ValueError
        If ``start_method`` is not one of the available methods.
    """
    if start_method is None:
        return
    available = available_methods()
    if not isinstance(start_method, str) or start_method not in available:
        raise ValueError(f"start_method must be None or one of {available}, got {start_method!r}")


def choose_start_method(start_method: Any) -> str:
    """Return the start method for a new process pool (see the module docstring for the default)."""
    check_start_method(start_method)
    if start_method is not None:
        return str(start_method)
    available = available_methods()
    if sys.platform.startswith("linux") and "fork" in available:
        if not fork_hazards():
            return "fork"
        return "forkserver" if "forkserver" in available else "spawn"
    return multiprocessing.get_start_method()


def register_service_thread(thread: threading.Thread) -> None:
    """Record a started batchup service thread as safe to fork beside."""
    with _service_lock:
        _service_threads.add(thread.native_id)


def unregister_service_thread(thread: threading.Thread) -> None:
    with _service_lock:
        _service_threads.discard(thread.native_id)


def fork_hazards() -> list:
    """Return a description of each thread that makes forking this process unsafe now.

    Empty when only the calling thread, batchup's service threads and
    unnamed native threads run. Uses ``/proc/self/task`` where it exists;
    elsewhere only Python threads are seen.
    """
    me = threading.get_native_id()
    with _service_lock:
        ours = set(_service_threads)
    python = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    hazards = [f"Python thread {name!r}" for tid, name in python.items() if tid != me and tid not in ours]
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        base = _comm(os.getpid())
    except (OSError, ValueError):
        return hazards
    for tid in tids:
        if tid == me or tid in ours or tid in python:
            continue
        name = _comm(tid)
        if name and name != base:
            hazards.append(f"native thread {name!r}")
    return hazards


def _comm(tid: int) -> str:
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
