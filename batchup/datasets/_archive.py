"""Reading untrusted archives: safe tar extraction and a restricted unpickler.

:func:`safe_extract` first reads every member header and refuses the whole
archive (:class:`~batchup.config.UnsafeArchiveError`, naming the member)
if one has an absolute name, climbs out with ``..``, is a symbolic or hard
link, or is a device, FIFO or other special file. Only then is anything
written, through ``extractall(filter='data')`` as a second layer (PEP 706),
which also clears setuid/setgid bits. :func:`load_pickle` unpickles with a
whitelist that admits NumPy arrays and nothing that can run code
(``UnsafePickleError`` otherwise).
"""
from __future__ import annotations

import os
import pickle
import posixpath
import shutil
import tarfile
import zlib
from typing import Any

import numpy as np

from batchup._errors import ArchiveError, UnsafeArchiveError, UnsafePickleError

__all__ = ["check_member", "load_pickle", "safe_extract"]

_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def check_member(member: tarfile.TarInfo, archive: str) -> None:
    """Raise UnsafeArchiveError unless ``member`` is a plain file or folder inside the archive root."""
    name = member.name
    why = None
    if name.startswith(("/", "\\")) or os.path.splitdrive(name)[0] or posixpath.isabs(name):
        why = "has an absolute path"
    elif ".." in posixpath.normpath(name.replace("\\", "/")).split("/"):
        why = "would be written outside the destination ('..')"
    elif member.issym() or member.islnk():
        why = f"is a link (to {member.linkname!r})"
    elif not (member.isfile() or member.isdir()):
        why = "is a device, FIFO or other special file"
    if why is not None:
        raise UnsafeArchiveError(f"refusing to extract {archive}: member {name!r} {why}")


def safe_extract(archive: str, dest: str) -> str:
    """Extract the tar file ``archive`` (any compression) into the new folder ``dest``.

    Raises
    ------
    UnsafeArchiveError
        If a member is unsafe (see the module docstring); nothing is written.
    ArchiveError
        If the archive is truncated or not a tar file; ``dest`` is removed.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, archive)
            for member in members:  # the 'data' filter does this too; kept for interpreters without it
                member.mode &= 0o755
            os.makedirs(dest)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.8.17 / 3.9.17 / 3.10.12 / 3.11.4
                tar.extractall(dest, members=members)
    except UnsafeArchiveError:
        raise
    except _ARCHIVE_ERRORS as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveError(f"cannot read the archive {archive}: {type(err).__name__}: {err}") from err
    return dest


_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles made by Python 3 spell bytes
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, where: str) -> None:
        super().__init__(file, encoding="latin1")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        canonical = module
        if module.startswith("numpy.core"):  # NumPy 1.x spelling; NumPy 2 renamed the package
            canonical = "numpy._core" + module[len("numpy.core"):]
        if (canonical, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(f"{self.where}: refusing to load the global {module}.{name} "
                                         f"(only NumPy arrays are allowed in dataset pickles)")
        if canonical.startswith("numpy._core") and not hasattr(np, "_core"):  # pragma: no cover - NumPy 1.x
            canonical = "numpy.core" + canonical[len("numpy._core"):]
        return super().find_class(canonical, name)


def load_pickle(path: str) -> Any:
    """Unpickle ``path`` (latin-1 strings, as Python 2 wrote them), allowing NumPy arrays only.

    Raises
    ------
    UnsafePickleError
        If the pickle refers to any other global (the message names it); it
        is an :class:`~batchup.config.UnsafeArchiveError` and a
        ``pickle.UnpicklingError``.
    ArchiveError
        If the file is truncated or not a pickle.
    """
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, path).load()
        except UnsafePickleError:
            raise
        except pickle.UnpicklingError as err:
            raise ArchiveError(f"{path} is not a valid pickle: {err}") from err
        except (EOFError, ValueError, TypeError) as err:
            raise ArchiveError(f"{path} is not a valid pickle: {type(err).__name__}: {err}") from err
