"""Shared-memory staging: result slots owned by the parent, and shared arrays.

Two things travel between a process pool's parent and its workers without
being copied through a pipe:

* **Results.** A stream of ``k`` outstanding tasks owns a ring of ``k`` slot
  files in the shared-memory folder. The *parent* creates and unlinks them; a
  worker opens the slot named in its task, sizes it, writes the result's
  arrays into it and closes it. Only a small skeleton (the result with every
  array replaced by an ``(offset, dtype, shape)`` reference) goes through the
  pipe. When the consumer retrieves the result, the parent maps the file and
  puts another file in the slot: the batch's arrays are views of that
  mapping, so nothing is copied and no later task can overwrite a batch the
  caller keeps; once the batch is garbage-collected its file is reused.
* **Shared constants** (the data source). Large arrays inside are not
  pickled: a ``np.memmap`` travels as its file name, and under ``spawn`` /
  ``forkserver`` an in-memory array is copied once into a segment the parent
  owns, which every worker maps copy-on-write. (Under ``fork`` the whole
  object is inherited instead; see :mod:`batchup.parallel.process_pool`.)

Segment names start with ``batchup-<parent pid>-``; a pool that starts sweeps
away segments whose parent is dead (left behind by a SIGKILL).
"""
from __future__ import annotations

import io
import itertools
import mmap
import os
import pickle
import tempfile
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["SlotRing", "dump_constant", "dump_result", "load_constant", "load_result", "shm_dir"]

#: Arrays smaller than this travel inside the pickle; larger ones go through shared memory.
INLINE_BYTES = 1 << 12
#: Arrays of a shared constant at least this large are staged once instead of pickled.
SHARE_BYTES = 1 << 20
PREFIX = "batchup-"
_ALIGN = 64
_counter = itertools.count()
_local = threading.local()


def shm_dir() -> str:
    """Return the folder for shared segments: ``$BATCHUP_SHM_DIR``, ``/dev/shm`` or the temp dir."""
    env = os.environ.get("BATCHUP_SHM_DIR")
    if env:
        return env
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


def new_name(tag: str) -> str:
    """Return a fresh segment path for this process."""
    return os.path.join(shm_dir(), f"{PREFIX}{os.getpid()}-{tag}-{next(_counter)}-{os.urandom(4).hex()}")


def sweep_stale() -> None:
    """Remove segments left by batchup processes that no longer exist."""
    folder = shm_dir()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        pid_text = name[len(PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SlotRing:
    """``size`` slot files, created and unlinked by the parent.

    When a result is handed out, its file stays mapped under the batch's
    arrays and the slot gets another file: a free one (whose batch has been
    garbage-collected, so its pages are warm) or a new one.
    """

    def __init__(self, size: int) -> None:
        self.paths: list = []
        self.free: list = []
        self.owned: set = set()
        self.closed = False
        self.lock = threading.Lock()
        try:
            for _ in range(size):
                self.paths.append(self._create())
        except OSError as err:
            self.close()
            raise OSError(
                f"could not create shared-memory slots in {shm_dir()!r} ({err}); "
                "set BATCHUP_SHM_DIR to a writable folder"
            ) from err

    def _create(self) -> str:
        path = new_name("slot")
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.close(fd)
        self.owned.add(path)
        return path

    def path(self, number: int) -> str:
        return self.paths[number % len(self.paths)]

    def renew(self, path: str) -> None:
        """Give the slot holding ``path`` another file (``path`` now backs a handed-out batch)."""
        with self.lock:
            if self.closed:
                return
            try:
                k = self.paths.index(path)
            except ValueError:
                return
            self.paths[k] = self.free.pop() if self.free else self._create()

    def release(self, path: str) -> None:
        """The batch mapped on ``path`` is gone: reuse the file, or remove it if the ring is closed."""
        with self.lock:
            if not self.closed:
                self.free.append(path)
                return
        _unlink(path)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            owned, self.owned, self.paths, self.free = self.owned, set(), [], []
        for path in owned:
            _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# -- results ---------------------------------------------------------------------------


class _ResultPickler(pickle.Pickler):
    def __init__(self, file: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arrays: list = []
        self.offset = 0

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and obj.nbytes >= INLINE_BYTES and not obj.dtype.hasobject:
            offset = self.offset
            self.arrays.append((offset, obj))
            self.offset = offset + (obj.nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
            return _from_slot, (offset, obj.dtype, obj.shape)
        return NotImplemented


def _from_slot(offset: int, dtype: Any, shape: tuple) -> np.ndarray:
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    # A view of the handed-over mapping: no copy; the mapping lives as long as the array.
    return np.frombuffer(_local.buffer, dtype=dtype, count=count, offset=offset).reshape(shape)


def dump_result(result: Any, slot: str | None) -> tuple:
    """Pickle ``result``; with a ``slot``, write its large arrays there. Return ``(skeleton, nbytes)``."""
    buf = io.BytesIO()
    pickler = _ResultPickler(buf) if slot is not None else pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dump(result)
    if slot is None or not pickler.arrays:
        return buf.getvalue(), 0
    fd = os.open(slot, os.O_WRONLY)
    try:
        # Plain writes: no page faults in the worker, and a full folder raises ENOSPC, never SIGBUS.
        for offset, arr in pickler.arrays:
            view = memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], offset + done)
        if os.fstat(fd).st_size < pickler.offset:
            os.ftruncate(fd, pickler.offset)
    finally:
        os.close(fd)
    return buf.getvalue(), pickler.offset


_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def load_result(skeleton: bytes, nbytes: int, slot: str | None, ring: SlotRing | None = None) -> Any:
    """Rebuild a result written by :func:`dump_result`.

    The slot's file is handed over: the batch's arrays are views of a
    mapping of it (nothing is copied) and ``ring`` puts another file in the
    slot, so no later task can overwrite a batch the caller keeps. When the
    batch is garbage-collected the file returns to the ring for reuse.
    """
    if not nbytes:
        return pickle.loads(skeleton)
    fd = os.open(slot, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, nbytes, flags=_MAP_FLAGS)
    finally:
        os.close(fd)
    if ring is not None:
        ring.renew(slot)
        weakref.finalize(mm, ring.release, slot)
    _local.buffer = mm
    try:
        return pickle.loads(skeleton)
    finally:
        _local.buffer = None
# -- shared constants ------------------------------------------------------------------------


class _ConstantPickler(pickle.Pickler):
    """Pickle with large arrays staged in shared segments (or by file name for memmaps)."""

    def __init__(self, file: Any, segments: list | None) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.segments = segments
        self.large = 0

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, np.ndarray) or obj.dtype.hasobject or obj.nbytes < SHARE_BYTES:
            return NotImplemented
        self.large += 1
        if isinstance(obj, np.memmap) and _memmap_file(obj) is not None:
            path, offset = _memmap_file(obj)
            return _open_shared, (path, offset, obj.dtype, obj.shape, _order(obj))
        if self.segments is None:
            # Only measuring: a placeholder keeps the scan cheap.
            return _open_shared, ("", 0, obj.dtype, (0,), "C")
        path = new_name("const")
        arr = np.ascontiguousarray(obj)
        self.segments.append(path)
        with open(path, "wb") as f:
            f.write(memoryview(arr.reshape(-1).view(np.uint8)))
        return _open_shared, (path, 0, arr.dtype, arr.shape, "C")


def _order(arr: np.ndarray) -> str:
    return "C" if arr.flags.c_contiguous else "F" if arr.flags.f_contiguous else "A"


def _memmap_file(arr: Any) -> tuple | None:
    # Only a memmap that owns its mapping (not a view into one) can be reopened exactly.
    if arr.filename is None or not isinstance(arr.base, mmap.mmap) or _order(arr) == "A":
        return None
    return arr.filename, int(arr.offset)


def _open_shared(path: str, offset: int, dtype: Any, shape: tuple, order: str) -> np.ndarray:
    if not path:
        return np.empty(shape, dtype=dtype)
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype=dtype)
    # Copy-on-write: a worker may modify what it was given without touching the others.
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order=order)


def dump_constant(obj: Any, segments: list | None) -> tuple:
    """Pickle a shared constant; return ``(payload, number of large arrays)``.

    With ``segments=None`` nothing is staged (a cheap scan that also checks
    picklability); otherwise new segment paths are appended to ``segments``.
    """
    buf = io.BytesIO()
    pickler = _ConstantPickler(buf, segments)
    pickler.dump(obj)
    return buf.getvalue(), pickler.large


def load_constant(payload: bytes) -> Any:
    return pickle.loads(payload)
