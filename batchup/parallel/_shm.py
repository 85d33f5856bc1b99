"""Shared-memory staging: result slots owned by the parent, and shared arrays.

Two things travel between a process pool's parent and its workers without
being copied through a pipe:

* **Results.** A stream of ``k`` outstanding tasks owns a ring of ``k`` slot
  files in the shared-memory folder. The *parent* creates and unlinks them; a
  worker opens the slot named in its task, grows it if needed, writes the
  result's arrays into it and closes it. Only a small skeleton (the result
  with every array replaced by an ``(offset, dtype, shape)`` reference) goes
  through the pipe. The parent copies the arrays out when the consumer
  retrieves the result, before the slot can be handed to another task.
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
    """``size`` empty slot files, created and unlinked by the parent."""

    def __init__(self, size: int) -> None:
        self.paths: list = []
        try:
            for _ in range(size):
                path = new_name("slot")
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
                os.close(fd)
                self.paths.append(path)
        except OSError as err:
            self.close()
            raise OSError(
                f"could not create shared-memory slots in {shm_dir()!r} ({err}); "
                "set BATCHUP_SHM_DIR to a writable folder"
            ) from err

    def path(self, number: int) -> str:
        return self.paths[number % len(self.paths)]

    def close(self) -> None:
        paths, self.paths = self.paths, []
        for path in paths:
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
    buf = _local.buffer
    out = np.empty(shape, dtype=dtype)
    if out.nbytes:
        src = np.frombuffer(buf, dtype=np.uint8, count=out.nbytes, offset=offset)
        out.reshape(-1).view(np.uint8)[:] = src
    return out


def dump_result(result: Any, slot: str | None) -> tuple:
    """Pickle ``result``; with a ``slot``, write its large arrays there. Return ``(skeleton, nbytes)``."""
    buf = io.BytesIO()
    pickler = _ResultPickler(buf) if slot is not None else pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dump(result)
    if slot is None or not pickler.arrays:
        return buf.getvalue(), 0
    total = pickler.offset
    fd = os.open(slot, os.O_RDWR)
    try:
        if os.fstat(fd).st_size < total:
            # Reserve the space first: a full tmpfs then raises ENOSPC here instead of SIGBUS later.
            os.posix_fallocate(fd, 0, total)
        with mmap.mmap(fd, total) as mm:
            for offset, arr in pickler.arrays:
                dst = np.frombuffer(mm, dtype=np.uint8, count=arr.nbytes, offset=offset)
                dst[:] = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
                del dst
    finally:
        os.close(fd)
    return buf.getvalue(), total


def load_result(skeleton: bytes, nbytes: int, slot: str | None) -> Any:
    """Rebuild a result written by :func:`dump_result` (arrays are fresh copies)."""
    if not nbytes:
        return pickle.loads(skeleton)
    fd = os.open(slot, os.O_RDONLY)
    try:
        with mmap.mmap(fd, nbytes, access=mmap.ACCESS_READ) as mm:
            _local.buffer = mm
            try:
                return pickle.loads(skeleton)
            finally:
                _local.buffer = None
    finally:
        os.close(fd)


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
