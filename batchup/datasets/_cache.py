"""Converted dataset caches: a folder of ``.npy`` files plus a manifest.

A converter writes every array with :class:`CacheWriter` into a temporary
folder; :meth:`CacheWriter.finish` flushes the files, fsyncs them and writes
``manifest.json`` last, and the fetch machinery then renames the folder into
place. A folder without a manifest is therefore never a finished cache.
:func:`load` memory-maps each array read-only with ``allow_pickle=False`` and
checks it against the manifest, so a truncated or planted file is refused.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np

__all__ = ["MANIFEST", "CacheError", "CacheWriter", "is_complete", "load", "remove"]

MANIFEST = "manifest.json"
FORMAT = 1


class CacheError(ValueError):
    """A converted cache is incomplete or does not match its manifest."""


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


class CacheWriter:
    """Write named arrays into the cache folder ``path`` (created empty)."""

    def __init__(self, path: str, dataset: str) -> None:
        os.makedirs(path)
        self.path, self.dataset = path, dataset
        self.arrays: dict[str, dict[str, Any]] = {}
        self._open: list[np.memmap] = []

    def _file(self, key: str) -> str:
        if not key.isidentifier():
            raise ValueError(f"cache array names must be identifiers, got {key!r}")
        return os.path.join(self.path, key + ".npy")

    def save(self, key: str, array: Any) -> None:
        """Store a small array (labels, names) in one go."""
        array = np.ascontiguousarray(array)
        if array.dtype.hasobject:
            raise TypeError(f"cache array {key!r} has an object dtype")
        np.save(self._file(key), array, allow_pickle=False)
        self.arrays[key] = {"shape": list(array.shape), "dtype": array.dtype.str}

    def create(self, key: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """Return a writable array backed by the file for ``key``, to be filled in place."""
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        self.arrays[key] = {"shape": list(shape), "dtype": dtype.str}
        if 0 in shape:
            np.save(self._file(key), np.zeros(shape, dtype))
            return np.zeros(shape, dtype)
        mm = np.lib.format.open_memmap(self._file(key), mode="w+", dtype=dtype, shape=shape)
        self._open.append(mm)
        return mm

    def finish(self) -> str:
        """Flush and fsync every array, then write the manifest; return the folder."""
        for mm in self._open:
            mm.flush()
        self._open.clear()
        for key in self.arrays:
            _fsync(self._file(key))
        manifest = {"format": FORMAT, "dataset": self.dataset, "arrays": self.arrays}
        with open(os.path.join(self.path, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync(self.path)
        return self.path


def is_complete(path: str) -> bool:
    """Return whether ``path`` is a finished cache folder (or a plain file)."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, MANIFEST))
    return os.path.isfile(path)


def load(path: str) -> dict[str, np.ndarray]:
    """Return the arrays of the cache folder ``path``, memory-mapped read-only.

    Raises
    ------
    CacheError
        If the manifest is missing or unreadable, or an array file is
        missing, truncated, holds Python objects, or has another shape or
        dtype than the manifest records.
    """
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        entries = manifest["arrays"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CacheError(f"dataset cache {path} has no valid {MANIFEST}: {err}") from err
    arrays = {}
    for key, meta in entries.items():
        file = os.path.join(path, key + ".npy")
        shape, dtype = tuple(meta["shape"]), np.dtype(meta["dtype"])
        try:
            with open(file, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0(f)  # (shape, fortran, dtype)
                else:
                    header = np.lib.format.read_array_header_2_0(f)
                offset = f.tell()
            if header[2].hasobject:
                raise CacheError(f"dataset cache file {file} holds Python objects; refusing to load it")
            if header[0] != shape or header[2] != dtype:
                raise CacheError(f"dataset cache file {file} has shape {header[0]} and dtype {header[2]}, "
                                 f"the manifest says {shape} and {dtype}")
            if os.path.getsize(file) < offset + int(np.prod(shape)) * dtype.itemsize:
                raise CacheError(f"dataset cache file {file} is truncated")
            if 0 in shape:
                arr = np.zeros(shape, dtype)
            else:
                arr = np.asarray(np.load(file, mmap_mode="r", allow_pickle=False))
        except CacheError:
            raise
        except (OSError, ValueError) as err:
            raise CacheError(f"dataset cache file {file} cannot be read: {err}") from err
        arrays[key] = arr
    return arrays


def remove(path: str) -> None:
    """Delete a cache folder or file, if present."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)
