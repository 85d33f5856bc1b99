"""An inter-process lock on a file path, so two processes never fetch or convert the same file at once.

:func:`file_lock` holds ``flock`` on ``<path>.lock`` for a ``with`` block.
The kernel drops the lock when its process dies, so a killed download never
blocks the next one, and the lock file is removed on release. Used by
:mod:`batchup.config` (downloads and copies) and
:mod:`batchup.datasets.dataset` (conversions); public as
:func:`batchup.config.file_lock`.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

__all__ = ["file_lock"]


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``<path>.lock`` for the ``with`` block.

    The lock dies with its process (``flock``), so a killed fetch never blocks
    the next one. The lock file is removed on release. A process that has to
    wait says so on stderr.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> target = os.path.join(folder, "file.bin")
    >>> with file_lock(target):
    ...     os.path.exists(target + ".lock")
    True
    >>> os.path.exists(target + ".lock")
    False
    >>> os.rmdir(folder)
    """
    lock_path = path + ".lock"
    os.makedirs(os.path.dirname(lock_path) or ".", exist_ok=True)
    fcntl: Any
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: a best-effort lock
        fcntl = None
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process to finish with {path}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # the holder we waited for may have removed the file: lock the current one
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)
