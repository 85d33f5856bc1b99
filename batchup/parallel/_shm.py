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

import collections
import ctypes
import io
import itertools
import mmap
import os
import pickle
import tempfile
import threading
import weakref
from typing import Any, Literal

import numpy as np

from batchup.parallel.errors import SHM_ENV, fd_limit_error, staging_error

__all__ = ["SlotRing", "dump_constant", "dump_result", "free_bytes", "load_constant", "load_result", "shm_dir"]

#: Arrays smaller than this travel inside the pickle; larger ones go through shared memory.
INLINE_BYTES = 1 << 12
#: Arrays of a shared constant at least this large are staged once instead of pickled.
SHARE_BYTES = 1 << 20
PREFIX = "batchup-"
#: ``/dev/shm`` is used only with at least this much free space (plus what is to be staged).
SHM_MIN_FREE = 1 << 28
_ALIGN = 64
_counter = itertools.count()
_local = threading.local()


def free_bytes(folder: str) -> int:
    """Return the bytes an unprivileged process may still write in ``folder`` (0 if unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def shm_dir(need: int = 0) -> str:
    """Return the folder for shared segments.

    ``$BATCHUP_SHM_DIR`` if set; else ``/dev/shm`` when it is writable and
    has at least ``need`` + :data:`SHM_MIN_FREE` bytes free (a container's
    default 64 MB ``/dev/shm`` does not); else the temp dir.
    """
    env = os.environ.get(SHM_ENV)
    if env:
        return env
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) and free_bytes("/dev/shm") >= need + SHM_MIN_FREE:
        return "/dev/shm"
    return tempfile.gettempdir()


def candidate_dirs() -> list:
    """Every folder segments may be in (``$BATCHUP_SHM_DIR``, ``/dev/shm``, the temp dir)."""
    out = []
    for folder in (os.environ.get(SHM_ENV), "/dev/shm", tempfile.gettempdir()):
        if folder and folder not in out and os.path.isdir(folder):
            out.append(folder)
    return out


def new_name(tag: str, folder: str | None = None) -> str:
    """Return a fresh segment path for this process (in ``folder``, default :func:`shm_dir`)."""
    folder = shm_dir() if folder is None else folder
    return os.path.join(folder, f"{PREFIX}{os.getpid()}-{tag}-{next(_counter)}-{os.urandom(4).hex()}")


def sweep_stale() -> None:
    """Remove segments left by batchup processes that no longer exist."""
    for folder in candidate_dirs():
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if not name.startswith(PREFIX):
                continue
            pid_text = name[len(PREFIX):].split("-", 1)[0]
            if not pid_text.isdigit() or pid_alive(int(pid_text)):
                continue
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def pid_alive(pid: int) -> bool:
    """Return whether process ``pid`` exists (a zombie counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_quietly(*items: Any) -> None:
    """Close each file descriptor (an int) or object with ``close()``, ignoring those already closed."""
    for item in items:
        try:
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()
        except OSError:
            pass


_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def _libc() -> Any:
    """Return libc's ``mmap``, ``munmap`` and ``madvise`` (``None`` where there is no POSIX libc).

    The parent maps result slots through libc rather than ``mmap.mmap``
    because, before Python 3.13, an ``mmap.mmap`` keeps a duplicate file
    descriptor per mapping: batches a caller keeps would each hold one and
    exhaust ``ulimit -n``; workers map their slots the same way.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn_map, fn_unmap, fn_advise = libc.mmap, libc.munmap, libc.madvise
    except (OSError, AttributeError):  # pragma: no cover - not a POSIX libc
        return None
    fn_map.restype = ctypes.c_void_p
    fn_map.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    fn_unmap.restype = ctypes.c_int
    fn_unmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fn_advise.restype = ctypes.c_int
    fn_advise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return fn_map, fn_unmap, fn_advise


_LIBC = _libc()
_MAP_FAILED = ctypes.c_void_p(-1).value


class SlotRing:
    """``size`` slot files, created, mapped once and unlinked by the parent.

    Each file is mapped into the parent once (and remapped only when a
    larger result arrives), so handing out a batch costs no system call:
    its arrays are views of that mapping. The file then leaves the ring and
    the slot gets another file: a free one (whose batch has been
    garbage-collected, so its pages are warm and already mapped) or a new
    one. A worker never writes into a file that backs a batch the caller
    still holds.
    """

    def __init__(self, size: int) -> None:
        self.paths: list = []
        self.free: list = []
        self.owned: set = set()
        self.maps: dict = {}  # path -> (address, mapped bytes)
        self.out: set = set()  # paths backing batches that are handed out
        self.closed = False
        self.on_close: Any = None  # called with the ring's paths when it closes
        self.lock = threading.Lock()
        try:
            for _ in range(size):
                self.paths.append(self._create())
        except OSError as err:
            self.close()
            if fd_limit_error(err, "") is not err:
                raise fd_limit_error(err, "creating shared-memory result slots") from err
            raise OSError(
                err.errno, f"could not create shared-memory result slots in {shm_dir()!r} ({err}); "
                f"set {SHM_ENV} to a writable folder"
            ) from err

    def _create(self) -> str:
        path = new_name("slot")
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.close(fd)
        self.owned.add(path)
        return path

    def path(self, number: int) -> str:
        return self.paths[number % len(self.paths)]

    def take(self, path: str, nbytes: int) -> Any:
        """Hand out the ``nbytes`` written to ``path``: return a buffer viewing them.

        The slot gets another file; when the buffer is garbage-collected
        ``path`` becomes free again.
        """
        with self.lock:
            if self.closed or path not in self.owned:
                return None
            addr, mapped = self.maps.get(path, (0, 0))
            if _LIBC is None:  # pragma: no cover - no libc mmap: the caller maps it per batch
                pass
            elif mapped < nbytes:
                if mapped:
                    _LIBC[1](addr, mapped)
                    del self.maps[path]
                mapped = max(1 << 20, 1 << (nbytes - 1).bit_length())
                addr = _map(path, mapped)
                _dont_fork(addr, mapped)
                self.maps[path] = (addr, mapped)
            try:
                k = self.paths.index(path)
            except ValueError:
                pass
            else:
                self.paths[k] = self.free.pop() if self.free else self._create()
            self.out.add(path)
        if _LIBC is None:  # pragma: no cover
            return None
        view = (ctypes.c_char * nbytes).from_address(addr)
        weakref.finalize(view, self.release, path)
        return view

    def release(self, path: str) -> None:
        """The batch on ``path`` is gone: reuse the file, or unmap it if the ring is closed."""
        with self.lock:
            self.out.discard(path)
            if not self.closed:
                self.free.append(path)
                return
            addr, mapped = self.maps.pop(path, (0, 0))
        if mapped:
            _LIBC[1](addr, mapped)

    def close(self) -> None:
        """Remove every file; unmap those no batch uses (the others when their batch goes)."""
        with self.lock:
            self.closed = True
            owned, self.owned, self.paths, self.free = self.owned, set(), [], []
            idle = [self.maps.pop(p) for p in list(self.maps) if p not in self.out]
        for path in owned:
            _unlink(path)
        if self.on_close is not None and owned:
            self.on_close(sorted(owned))
        for addr, mapped in idle:
            _LIBC[1](addr, mapped)


def _dont_fork(addr: int, nbytes: int) -> None:
    """Keep a mapping out of forked children (workers forked later must not pin the parent's slots)."""
    advice = getattr(mmap, "MADV_DONTFORK", None)
    if _LIBC is not None and advice is not None:
        _LIBC[2](addr, nbytes, advice)


def _map(path: str, nbytes: int) -> int:
    """Map ``nbytes`` of ``path`` shared and writable (no descriptor stays open); return the address."""
    assert _LIBC is not None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as err:
        raise fd_limit_error(err, "mapping a batch's shared memory") from err
    try:
        addr = _LIBC[0](None, nbytes, mmap.PROT_READ | mmap.PROT_WRITE, _MAP_FLAGS, fd, 0)
    finally:
        os.close(fd)
    if addr is None or addr == _MAP_FAILED:
        code = ctypes.get_errno()
        raise OSError(code, f"could not map {path!r} ({os.strerror(code)})")
    return addr


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
    """Pickle ``result``; with a ``slot``, write its large arrays there. Return ``(skeleton, nbytes)``.

    A full folder raises :class:`~batchup.parallel.errors.StagingSpaceError`
    (space is reserved with ``posix_fallocate`` before anything is written
    through a mapping, so it is never a SIGBUS).
    """
    buf = io.BytesIO()
    if slot is None:
        pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(result)
        return buf.getvalue(), 0
    pickler = _ResultPickler(buf)
    pickler.dump(result)
    if not pickler.arrays:
        return buf.getvalue(), 0
    try:
        target = _writable(slot, pickler.offset)
        if target is None:  # pragma: no cover - no libc mmap / posix_fallocate
            _pwrite_arrays(slot, pickler.arrays, pickler.offset)
        else:
            for offset, arr in pickler.arrays:
                dst = np.frombuffer(target, dtype=arr.dtype, count=arr.size, offset=offset)
                np.copyto(dst.reshape(arr.shape), arr, casting="no")
    except OSError as err:
        raise staging_error(err, os.path.dirname(slot), pickler.offset, "a result") from err
    return buf.getvalue(), pickler.offset


#: In a worker: slot path -> (buffer, mapped bytes, address); least recently used first.
_WRITE_MAPS: collections.OrderedDict = collections.OrderedDict()
#: Most slot files a worker keeps mapped (the parent also sends ``unmap`` when a ring closes).
MAX_WRITE_MAPS = 64


def _writable(slot: str, nbytes: int) -> Any:
    """Return a writable buffer over at least ``nbytes`` of ``slot`` (mapped once per file in a worker).

    Mapped through libc like the parent's slots: a worker forked from a busy
    parent inherits its descriptors, and ``mmap.mmap`` (before Python 3.13)
    would hold one more per mapping.
    """
    if _LIBC is None or not hasattr(os, "posix_fallocate"):  # pragma: no cover
        return None
    entry = _WRITE_MAPS.get(slot)
    if entry is not None and entry[1] >= nbytes:
        _WRITE_MAPS.move_to_end(slot)
        return entry[0]
    size = (nbytes + 0xFFFF) & ~0xFFFF
    fd = os.open(slot, os.O_RDWR)
    try:
        # Reserve the pages first: a full folder is ENOSPC here, not a SIGBUS on a store.
        # Slot files only ever grow, so a mapping made earlier never covers a hole.
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    addr = _map(slot, size)
    forget([slot])
    _WRITE_MAPS[slot] = ((ctypes.c_char * size).from_address(addr), size, addr)
    while len(_WRITE_MAPS) > MAX_WRITE_MAPS:
        _, (_, old_size, old_addr) = _WRITE_MAPS.popitem(last=False)
        _LIBC[1](old_addr, old_size)
    return _WRITE_MAPS[slot][0]


def forget(paths: Any) -> None:
    """In a worker: unmap the slot files ``paths`` (their ring has closed)."""
    for path in paths:
        entry = _WRITE_MAPS.pop(path, None)
        if entry is not None and _LIBC is not None:
            _LIBC[1](entry[2], entry[1])


def _pwrite_arrays(slot: str, arrays: list, total: int) -> None:  # pragma: no cover - fallback
    fd = os.open(slot, os.O_WRONLY)
    try:
        for offset, arr in arrays:
            view = np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], offset + done)
        if os.fstat(fd).st_size < total:
            os.ftruncate(fd, total)
    finally:
        os.close(fd)


def _unmap(addr: int, nbytes: int, ring: SlotRing | None, slot: str) -> None:
    assert _LIBC is not None
    _LIBC[1](addr, nbytes)
    if ring is not None:
        ring.release(slot)


def map_file(path: str, nbytes: int, ring: SlotRing | None = None) -> Any:
    """Map ``nbytes`` of ``path`` shared and writable; return a buffer object.

    The mapping keeps no file descriptor open (see :func:`_libc`). When the
    buffer is garbage-collected it is unmapped and ``path`` goes back to
    ``ring``.
    """
    if _LIBC is None:  # pragma: no cover - not a POSIX libc
        fd = os.open(path, os.O_RDWR)
        try:
            buf: Any = mmap.mmap(fd, nbytes, flags=_MAP_FLAGS)
        finally:
            os.close(fd)
        if ring is not None:
            weakref.finalize(buf, ring.release, path)
        return buf
    addr = _map(path, nbytes)
    buf = (ctypes.c_char * nbytes).from_address(addr)
    weakref.finalize(buf, _unmap, addr, nbytes, ring, path)
    return buf


def load_result(skeleton: bytes, nbytes: int, slot: str | None, ring: SlotRing | None = None) -> Any:
    """Rebuild a result written by :func:`dump_result`.

    The slot's file is handed over: the batch's arrays are views of a
    mapping of it (nothing is copied) and ``ring`` puts another file in the
    slot, so no later task can overwrite a batch the caller keeps. When the
    batch is garbage-collected the file returns to the ring for reuse.
    """
    if not nbytes:
        return pickle.loads(skeleton)
    assert slot is not None
    buf = ring.take(slot, nbytes) if ring is not None else None
    if buf is None:  # no ring (or no libc mmap): a mapping of its own, removed with the batch
        buf = map_file(slot, nbytes, ring if _LIBC is None else None)
    _local.buffer = buf
    try:
        return pickle.loads(skeleton)
    finally:
        _local.buffer = None


# -- shared constants ------------------------------------------------------------------------


class _ConstantPickler(pickle.Pickler):
    """Pickle with large arrays staged in shared segments (or by file name for memmaps).

    With ``segments=None`` nothing is written: the scan counts the large
    arrays and the bytes staging them would need.
    """

    def __init__(self, file: Any, segments: list | None, folder: str | None = None) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.segments = segments
        self.folder = folder
        self.large = 0
        self.stage_bytes = 0

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, np.ndarray) or obj.dtype.hasobject or obj.nbytes < SHARE_BYTES:
            return NotImplemented
        self.large += 1
        where = _memmap_file(obj) if isinstance(obj, np.memmap) else None
        if where is not None:
            return _open_shared, (where[0], where[1], obj.dtype, obj.shape, _order(obj))
        self.stage_bytes += obj.nbytes
        if self.segments is None:
            # Only measuring: a placeholder keeps the scan cheap.
            return _open_shared, ("", 0, obj.dtype, (0,), "C")
        path = new_name("const", self.folder)
        arr = np.ascontiguousarray(obj)
        self.segments.append(path)
        try:
            with open(path, "wb") as f:
                f.write(arr.reshape(-1).view(np.uint8).data)
        except OSError as err:
            raise staging_error(err, os.path.dirname(path), arr.nbytes, "a shared array") from err
        return _open_shared, (path, 0, arr.dtype, arr.shape, "C")


def _order(arr: np.ndarray) -> Literal["C", "F", "A"]:
    return "C" if arr.flags.c_contiguous else "F" if arr.flags.f_contiguous else "A"


def _memmap_file(arr: Any) -> tuple | None:
    # Only a memmap that owns its mapping (not a view into one) can be reopened exactly. A
    # copy-on-write memmap (mode "c") may hold edits that live only in this process's memory:
    # it is copied like an in-memory array, so workers see those edits (the snapshot).
    if arr.filename is None or not isinstance(arr.base, mmap.mmap) or _order(arr) == "A":
        return None
    if getattr(arr, "mode", None) == "c":
        return None
    return arr.filename, int(arr.offset)


def _open_shared(path: str, offset: int, dtype: Any, shape: tuple, order: Literal["C", "F", "A"]) -> np.ndarray:
    if not path:
        return np.empty(shape, dtype=dtype)
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype=dtype)
    # Copy-on-write: a worker may modify what it was given without touching the others.
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order=order)


def dump_constant(obj: Any, segments: list | None, folder: str | None = None) -> tuple:
    """Pickle a shared constant; return ``(payload, number of large arrays, bytes to stage)``.

    With ``segments=None`` nothing is staged (a cheap scan that also checks
    picklability); otherwise new segment paths (in ``folder``) are appended
    to ``segments``, and a full folder raises
    :class:`~batchup.parallel.errors.StagingSpaceError` (the caller removes
    the segments).
    """
    buf = io.BytesIO()
    pickler = _ConstantPickler(buf, segments, folder)
    pickler.dump(obj)
    return buf.getvalue(), pickler.large, pickler.stage_bytes


def load_constant(payload: bytes) -> Any:
    return pickle.loads(payload)
