"""Sorted reads: gather a batch from out-of-core arrays in increasing index order.

A shuffled batch asks for rows in random order. An in-memory ``ndarray``
does not care, but storage-backed arrays do: h5py datasets refuse indices
that are not strictly increasing, and memory-mapped files and zarr arrays
read faster when the rows (pages, chunks) are visited in file order. This
module reads the distinct rows of a batch in increasing order and then puts
them back into the sampled order, so the batch is exactly what NumPy fancy
indexing would give.

The rule that decides who gets sorted reads (:func:`wants_sorted_reads`):

1. an object with a ``__batchup_sorted_reads__`` attribute gets its truth
   value (so any array-like can opt in, or out);
2. otherwise ``np.memmap`` instances, and objects whose type is defined in
   the ``h5py`` or ``zarr`` packages, get sorted reads;
3. everything else, plain ``ndarray`` included, is read as is.

The packages are recognised by the module name of the object's type, so
this module never imports h5py or zarr.
"""
from __future__ import annotations

import mmap
from typing import Any

import numpy as np

__all__ = ["SORTED_READ_PACKAGES", "gather", "sorted_gather", "wants_sorted_reads"]

#: Top-level packages whose array types get sorted reads.
SORTED_READ_PACKAGES = frozenset({"h5py", "zarr"})

#: A span of rows is read as one slice when it is at most this many times
#: longer than the number of distinct rows wanted (only for types known to
#: accept slices: memmaps, h5py and zarr). One contiguous read beats many
#: small ones, and an in-order batch becomes a single slice.
DENSE_SPAN_FACTOR = 2

_PAGE_BYTES = mmap.PAGESIZE


def wants_sorted_reads(d: Any) -> bool:
    """Return True if reads from ``d`` should be issued in increasing index order.

    An object's own ``__batchup_sorted_reads__`` attribute decides when it
    has one; otherwise memmaps and the arrays of the packages in
    :data:`SORTED_READ_PACKAGES` (h5py and zarr) want sorted reads.

    Parameters
    ----------
    d : array-like
        An array or an object with ``__len__`` and ``__getitem__``.

    Returns
    -------
    bool
        Whether :func:`gather` reads ``d`` through :func:`sorted_gather`.

    Examples
    --------
    >>> import numpy as np
    >>> wants_sorted_reads(np.zeros(3))
    False
    >>> class Reader:
    ...     __batchup_sorted_reads__ = True
    >>> wants_sorted_reads(Reader())
    True
    """
    flag = getattr(d, "__batchup_sorted_reads__", None)
    if flag is not None:
        return bool(flag)
    return _known_kind(d)


def _known_kind(d: Any) -> bool:
    if isinstance(d, np.memmap):
        return True
    return type(d).__module__.partition(".")[0] in SORTED_READ_PACKAGES


def gather(d: Any, indices: np.ndarray) -> Any:
    """Return the rows ``indices`` of ``d`` along axis 0, in the order given.

    Plain ndarrays use ``np.take``; array-likes that want sorted reads use
    :func:`sorted_gather`; any other array-like is indexed as ``d[indices]``.

    Parameters
    ----------
    d : array-like
        An array or an object with ``__len__`` and ``__getitem__``.
    indices : numpy.ndarray of int
        The rows to read, 1-D, in the order wanted; duplicates allowed.

    Returns
    -------
    array-like
        ``len(indices)`` rows of ``d``; an ``ndarray`` for NumPy arrays and
        sorted reads, whatever ``d[indices]`` returns otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> gather(np.arange(10) * 10, np.array([3, 1, 3])).tolist()
    [30, 10, 30]
    """
    if type(d) is np.ndarray:
        return np.take(d, indices, axis=0)
    if wants_sorted_reads(d):
        return sorted_gather(d, indices)
    if isinstance(d, np.ndarray):
        return np.take(d, indices, axis=0)
    return d[indices]


def sorted_gather(d: Any, indices: np.ndarray) -> np.ndarray:
    """Read the distinct ``indices`` of ``d`` in increasing order, return them in the given order.

    ``d[sorted_unique]`` is the only read issued (or one slice ``d[lo:hi]``
    when the rows are dense and ``d`` is a memmap, h5py or zarr array);
    duplicates are read once. The result is a fresh ``ndarray`` equal to
    ``np.asarray(d)[indices]``. A C-contiguous memmap is handled without
    the reordering copy: one value per page of every wanted row is read in
    increasing order (so storage is read in file order), then the rows are
    copied out in the order asked for from the now resident pages.

    Parameters
    ----------
    d : array-like
        An array or an object with ``__len__`` and ``__getitem__`` that
        accepts an increasing integer array (or a slice).
    indices : numpy.ndarray of int
        The rows to read, 1-D, in the order wanted; duplicates allowed.

    Returns
    -------
    numpy.ndarray
        A new array of ``len(indices)`` rows, in the order of ``indices``.

    Examples
    --------
    >>> import numpy as np
    >>> class IncreasingOnly:
    ...     def __init__(self, a):
    ...         self.a = a
    ...     def __len__(self):
    ...         return len(self.a)
    ...     def __getitem__(self, idx):
    ...         assert (np.diff(idx) > 0).all(), "indices must increase"
    ...         return self.a[idx]
    >>> sorted_gather(IncreasingOnly(np.arange(10) * 10), np.array([7, 2, 7, 0])).tolist()
    [70, 20, 70, 0]
    """
    indices = np.asarray(indices)
    n = len(indices)
    if n <= 1 or bool(np.all(indices[1:] > indices[:-1])):
        return _read_increasing(d, indices)
    if isinstance(d, np.memmap) and _touch_pages_in_order(d, indices):
        return _as_array(np.take(d, indices, axis=0))
    uniq, inverse = np.unique(indices, return_inverse=True)
    block = _read_increasing(d, uniq)
    return np.take(block, inverse.reshape(-1), axis=0)


def _touch_pages_in_order(d: np.memmap, indices: np.ndarray) -> bool:
    """Fault in the pages of the wanted rows in increasing file order; False if not possible.

    Reading one value per page of each row, rows sorted, makes the kernel
    fetch the batch from storage in file order; the copy in sampled order
    that follows then finds every page resident. This costs one small read
    instead of a second copy of the whole batch.
    """
    if not d.flags.c_contiguous or d.size == 0:
        return False
    flat = d.reshape(len(d), -1)
    step = max(1, _PAGE_BYTES // d.itemsize)
    cols = np.arange(0, flat.shape[1], step)
    rows = np.sort(indices)
    flat[rows[:, None], cols[None, :]].view(np.ndarray).sum()
    return True


def _read_increasing(d: Any, idx: np.ndarray) -> np.ndarray:
    """Read strictly increasing ``idx`` from ``d`` as one fancy read or one slice."""
    if len(idx) and _known_kind(d):
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if hi - lo <= DENSE_SPAN_FACTOR * len(idx):
            block = _as_array(d[lo:hi])
            if hi - lo == len(idx):
                return block.copy() if isinstance(d, np.ndarray) else block
            return np.take(block, idx - lo, axis=0)
    if isinstance(d, np.ndarray):
        return _as_array(np.take(d, idx, axis=0))
    return _as_array(d[idx])


def _as_array(x: Any) -> np.ndarray:
    # np.take on a memmap returns an np.memmap object that owns no file;
    # batches are plain ndarrays.
    if isinstance(x, np.ndarray):
        return x if type(x) is np.ndarray else x.view(np.ndarray)
    return np.asarray(x)
