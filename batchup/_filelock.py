"""An inter-process lock on a file path, so two processes never fetch or convert the same file at once.

:func:`file_lock` holds an exclusive lock on a lock file for a ``with``
block. The operating system drops the lock when its process dies, so a
killed download never blocks the next one. Three backends, in this order:

1. the `filelock <https://py-filelock.readthedocs.io>`_ package, when it is
   installed (``pip install batchup[datasets]``): ``flock`` on POSIX,
   ``msvcrt.locking`` on Windows;
2. otherwise ``fcntl.flock`` (POSIX);
3. otherwise ``msvcrt.locking`` (Windows without filelock), polled every
   0.1 s while another process holds the lock.

Where neither ``fcntl`` nor ``msvcrt`` exists, :func:`file_lock` warns
(:class:`LockUnavailableWarning`) and runs the block without a lock; so it
does when a file system refuses locks (some network file systems).

**Lock files are kept.** With ``flock`` the lock belongs to the file, not
to its name: deleting the name while a second process waits on it would let
a third create a new file of that name and lock it too (the reason
filelock keeps its lock files on POSIX). So lock files are never deleted.
To keep dataset folders clean, the lock file of a path inside ``root``
(the batchup data directory) lives in ``<root>/.locks/``; any other path is
locked with ``<path>.lock`` beside it. Used by :mod:`batchup.config`
(downloads and copies) and :mod:`batchup.datasets.dataset` (conversions);
public as :func:`batchup.config.file_lock`.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import os
import sys
import time
import warnings
from typing import Any, Iterator

__all__ = ["LOCK_DIR", "LockUnavailableWarning", "backend", "file_lock", "lock_path"]

#: The folder, inside the root passed to :func:`file_lock`, that holds its lock files.
LOCK_DIR = ".locks"
_POLL = 0.1
#: errno values of a file system that does not do locks.
_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


class LockUnavailableWarning(RuntimeWarning):
    """No inter-process lock could be taken; two processes may fetch the same file at once."""


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def backend() -> str:
    """Return the lock backend in use: ``'filelock'``, ``'fcntl'``, ``'msvcrt'`` or ``'none'``."""
    for name in ("filelock", "fcntl", "msvcrt"):
        if _importable(name):
            return name
    return "none"


def lock_path(path: str, root: str | None = None) -> str:
    """Return the lock file of ``path``: in ``<root>/.locks/`` if ``path`` is inside ``root``, else ``<path>.lock``.

    Examples
    --------
    >>> import os
    >>> root = os.path.abspath("data")
    >>> name = lock_path(os.path.join(root, "temp", "mnist", "a.gz"), root)
    >>> os.path.dirname(name) == os.path.join(root, ".locks"), os.path.basename(name)[:5]
    (True, 'a.gz-')
    >>> lock_path("/elsewhere/b.bin", root) == os.path.abspath("/elsewhere/b.bin") + ".lock"
    True
    """
    full = os.path.abspath(path)
    if root is not None:
        base = os.path.abspath(root)
        rel = os.path.relpath(full, base)
        if not rel.startswith(os.pardir) and not os.path.isabs(rel) and rel != os.curdir:
            key = hashlib.sha256(rel.replace(os.sep, "/").encode("utf-8")).hexdigest()[:16]
            return os.path.join(base, LOCK_DIR, f"{os.path.basename(full)}-{key}.lock")
    return full + ".lock"


def _waiting(path: str) -> None:
    print(f"waiting for another process to finish with {path}", file=sys.stderr, flush=True)


def _no_lock(path: str, why: str) -> None:
    warnings.warn(f"no inter-process lock for {path} ({why}); two processes fetching it at once may both "
                  f"download it", LockUnavailableWarning, stacklevel=4)


def _open(lock: str) -> int:
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    return os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)


@contextlib.contextmanager
def _with_filelock(lock: str, path: str) -> Iterator[None]:
    import filelock

    os.makedirs(os.path.dirname(lock), exist_ok=True)
    held = filelock.FileLock(lock)
    try:
        held.acquire(timeout=0)
    except filelock.Timeout:
        _waiting(path)
        held.acquire()
    try:
        yield
    finally:
        held.release()


@contextlib.contextmanager
def _with_fcntl(lock: str, path: str) -> Iterator[None]:
    import fcntl

    fd = _open(lock)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _waiting(path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            if err.errno not in _NO_LOCKS:
                raise
            _no_lock(path, f"the file system refuses flock: {err.strerror}")
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _with_msvcrt(lock: str, path: str) -> Iterator[None]:
    msvcrt: Any = importlib.import_module("msvcrt")
    fd = _open(lock)
    try:
        waited = False
        while True:
            os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the current position
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                break
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EDEADLK):
                    if err.errno in _NO_LOCKS:
                        _no_lock(path, f"the file system refuses locks: {err.strerror}")
                        break
                    raise
            if not waited:
                _waiting(path)
                waited = True
            time.sleep(_POLL)
        try:
            yield
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
            with contextlib.suppress(OSError):
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: str, *, root: str | None = None) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` for the ``with`` block.

    The lock file is :func:`lock_path(path, root) <lock_path>`; it is kept
    after release (see the module docstring). The lock dies with its process,
    so a killed fetch never blocks the next one. A process that has to wait
    says so on stderr. Locks taken by different backends on the same lock
    file exclude each other (all of them lock the file itself).

    Parameters
    ----------
    path : str
        The file to protect (it need not exist).
    root : str, optional
        Keyword-only. A folder whose lock files are gathered in ``<root>/.locks``.

    Warns
    -----
    LockUnavailableWarning
        When no lock can be taken (no ``fcntl``, ``msvcrt`` nor filelock, or a
        file system without locks); the block then runs unlocked.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with file_lock(os.path.join(folder, "temp", "file.bin"), root=folder):
    ...     os.listdir(folder)
    ['.locks']
    >>> import shutil; shutil.rmtree(folder)
    """
    lock = lock_path(path, root)
    kind = backend()
    held: contextlib.AbstractContextManager[None]
    if kind == "filelock":
        held = _with_filelock(lock, path)
    elif kind == "fcntl":
        held = _with_fcntl(lock, path)
    elif kind == "msvcrt":
        held = _with_msvcrt(lock, path)
    else:
        _no_lock(path, "neither filelock nor fcntl nor msvcrt is available")
        held = contextlib.nullcontext()
    with held:
        yield
