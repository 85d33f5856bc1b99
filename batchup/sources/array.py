"""ArrayDataSource: batches gathered from a list of arrays or array-likes.

An array-like is anything with ``__len__`` and a ``__getitem__`` that
accepts a 1-D integer index array (NumPy arrays, memmaps, h5py datasets,
lazy loaders). NumPy arrays are gathered with ``np.take(..., axis=0)``, and
when a sampler offers several whole batches inside one epoch they are
gathered with a single call and handed out one by one, which is what makes
batchup as fast as a hand-written loop.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchup._checks import index_array
from batchup._iterator import StatefulIterator, check_state
from batchup.arrays import sorted_reads as _sorted_reads
from batchup.samplers import BalancedSampler, StandardSampler, WeightedSampler
from batchup.sources.base import RandomAccessDataSource, _load_into, _state_of

__all__ = ["ArrayBatchIterator", "ArrayDataSource"]

#: Upper bound on the bytes one grouped gather fetches ahead of the consumer.
CHUNK_BYTES = 1 << 20
#: Upper bound on the number of batches one grouped gather fetches.
CHUNK_BATCHES = 32


class ArrayDataSource(RandomAccessDataSource):
    """Draw mini-batches from a list of equally long arrays or array-likes.

    Parameters
    ----------
    data : list of array-like
        The arrays, all with the same number of samples along axis 0. The
        list is kept as given (``ds.data`` holds the very objects passed).
    indices : 1-D array-like of int, optional
        Draw only these samples.
    repeats : int, default 1
        Epochs per iteration; ``-1`` for forever.
    sampler : AbstractSampler, optional
        A sampler to use instead of the standard or subset sampler.
    include_indices : bool, default False
        Prepend the absolute sample indices to every batch.

    Raises
    ------
    TypeError
        If ``data`` is not a list, or an element is not array-like.
    ValueError
        If ``data`` is empty or the lengths differ; for invalid ``repeats``,
        ``sampler`` combinations, or a sampler sized for other data.
    IndexError
        If ``indices`` holds an index outside the data.

    Notes
    -----
    Batches are tuples of fresh arrays (never views into ``data``), so a
    batch may be modified in place. Only the last batch of a finite run is
    short. See :meth:`batch_iterator` for shuffling.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(10) * 10
    >>> y = np.arange(10)
    >>> ds = ArrayDataSource([X, y])
    >>> for bX, by in ds.batch_iterator(batch_size=4):
    ...     print(bX.tolist(), by.tolist())
    [0, 10, 20, 30] [0, 1, 2, 3]
    [40, 50, 60, 70] [4, 5, 6, 7]
    [80, 90] [8, 9]

    A shuffled, reproducible order from an int seed, with the sample indices:

    >>> ds = ArrayDataSource([X], include_indices=True)
    >>> [ix.tolist() for ix, bX in ds.batch_iterator(4, shuffle=42)] # doctest: +SKIP
    """

    def __init__(
        self,
        data: list,
        indices: Any = None,
        repeats: int = 1,
        sampler: Any = None,
        include_indices: bool = False,
    ) -> None:
        if not isinstance(data, list):
            raise TypeError(
                f"data must be a list of array-likes, got {type(data).__name__}; "
                "wrap a single array as [X]"
            )
        if not data:
            raise ValueError("data must contain at least one array")
        for i, d in enumerate(data):
            if not ((hasattr(d, "__len__") or _has_shape(d)) and hasattr(d, "__getitem__")):
                raise TypeError(
                    f"data[{i}] is not array-like (it needs __len__ or a shape, and __getitem__): "
                    f"{type(d).__name__}"
                )
            if isinstance(d, np.ndarray) and d.ndim == 0:
                raise TypeError(f"data[{i}] must have at least 1 dimension, got a 0-d array")
        length = _num_rows(data[0])
        for i, d in enumerate(data[1:], start=1):
            if _num_rows(d) != length:
                raise ValueError(
                    f"all arrays in data must have the same length: data[0] has {length} "
                    f"samples but data[{i}] has {_num_rows(d)}"
                )
        super().__init__(length, indices=indices, repeats=repeats, sampler=sampler, include_indices=include_indices)
        if sampler is not None:
            _check_sampler_fits(sampler, length)
        self.data = data

    def samples_by_indices_nomapping(self, indices: Any) -> tuple:
        """Return ``tuple(d[indices] for d in data)`` (with the indices first if asked).

        ``indices`` is a 1-D integer array of absolute indices, or a slice.
        """
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(self._length))
        else:
            indices = np.asarray(indices)
        batch = tuple(_gather(d, indices) for d in self.data)
        if self.include_indices:
            return (indices,) + batch
        return batch

    def batch_iterator(self, batch_size: int, shuffle: Any = None, **kwargs: Any) -> ArrayBatchIterator:
        """Return an iterator over batches of ``batch_size`` samples.

        Parameters
        ----------
        batch_size : int
            Samples per batch (a positive int; NumPy ints are fine).
        shuffle : bool, int, RandomState or Generator, optional
            ``None``/``False``: in order. ``True``: shuffled with the global
            NumPy RNG. An int in ``[0, 2**32)``: shuffled reproducibly, epoch
            ``e`` from ``(seed, e)``. A ``RandomState``/``Generator``: drawn
            from, as BatchUp 0.2 does.
        drop_last : bool, default False
            Keyword-only: drop a final short batch.

        Returns
        -------
        ArrayBatchIterator
            Iterator of tuples of arrays, with ``state_dict()`` and
            ``load_state_dict()`` for exact resume.
        """
        return ArrayBatchIterator(self, self.batch_indices_iterator(batch_size, shuffle, **kwargs))

    def __repr__(self) -> str:
        return f"ArrayDataSource(<{len(self.data)} arrays of {self._length} samples>, sampler={self.sampler!r})"


def _has_shape(d: Any) -> bool:
    shape = getattr(d, "shape", None)
    return isinstance(shape, tuple) and len(shape) >= 1


def _num_rows(d: Any) -> int:
    """Return the number of samples: ``len(d)``, or ``d.shape[0]`` for arrays without ``__len__`` (zarr 3)."""
    if hasattr(d, "__len__"):
        return len(d)
    return int(d.shape[0])


def _check_sampler_fits(sampler: Any, length: int) -> None:
    if isinstance(sampler, (StandardSampler, WeightedSampler, BalancedSampler)) and sampler.length != length:
        raise ValueError(
            f"sampler is sized for {sampler.length} samples but the data has {length} samples"
        )
    indices = getattr(sampler, "indices", None)
    if indices is not None:
        index_array("sampler.indices", indices, length)


def _gather(d: Any, indices: np.ndarray) -> Any:
    if type(d) is np.ndarray:
        return np.take(d, indices, axis=0)
    # memmaps, h5py/zarr arrays and opted-in array-likes read in sorted order
    # and restore the sampled order; other array-likes get ``d[indices]``.
    return _sorted_reads.gather(d, indices)


class ArrayBatchIterator(StatefulIterator):
    """Iterator over the batches of an :class:`ArrayDataSource`.

    When every array is a plain ``np.ndarray`` and the sampler can hand out
    several whole batches within one epoch, up to :data:`CHUNK_BATCHES`
    batches (at most :data:`CHUNK_BYTES`) are gathered with one ``np.take``
    per array; each batch is then a slice of that freshly gathered block, so
    it is still independent of the source arrays and of other batches.
    """

    KIND = "array"

    def __init__(self, source: ArrayDataSource, indices: Any) -> None:
        self._indices = indices
        self._data = tuple(source.data)
        self._include = source.include_indices
        self._pending: list = []
        self._pos = 0
        self._group = 1
        bs: Any = getattr(indices, "_bs", None)
        groupable = getattr(indices, "GROUPABLE", False) and hasattr(indices, "take_run")
        if bs and groupable and all(type(d) is np.ndarray for d in self._data):
            row_bytes = sum(d.itemsize * (d.size // max(len(d), 1)) for d in self._data) + 8
            self._group = int(max(1, min(CHUNK_BATCHES, CHUNK_BYTES // (row_bytes * bs))))
        self._bs = bs

    def __next__(self) -> tuple:
        pending = self._pending
        if self._pos < len(pending):
            batch = pending[self._pos]
            pending[self._pos] = None
            self._pos += 1
            return batch
        if self._group > 1:
            idx = self._indices.take_run(self._group)
            if idx is not None:
                return self._split(idx)
        idx = next(self._indices)
        if self._include:
            return (idx,) + tuple([_gather(d, idx) for d in self._data])
        return tuple([_gather(d, idx) for d in self._data])

    def _split(self, idx: np.ndarray) -> tuple:
        cols = [np.take(d, idx, axis=0) for d in self._data]
        if self._include:
            cols.insert(0, idx)
        bs = self._bs
        m = len(idx) // bs
        batches = [tuple([c[i : i + bs] for c in cols]) for i in range(0, m * bs, bs)]
        self._pending = batches
        self._pos = 1
        return batches[0]

    @property
    def last_padding(self) -> Any:
        """For a sharded iterator: mask of wrap-around duplicates in the last batch, else None."""
        return getattr(self._indices, "last_padding", None)

    def _unconsumed(self) -> int:
        return len(self._pending) - self._pos

    def remaining(self) -> Any:
        fn = getattr(self._indices, "remaining", None)
        left = fn() if fn is not None else None
        return None if left is None else left + self._unconsumed()

    def __len__(self) -> int:
        left = self.remaining()
        if left is None:
            raise TypeError("this batch iterator is endless or of unknown length")
        return left

    def state_dict(self) -> dict:
        pending = self._unconsumed()
        if pending:
            index_state = self._indices.state_dict(pending=pending)
        else:
            index_state = _state_of(self._indices)
        return {"kind": self.KIND, "indices": index_state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, {"kind": self.KIND}, type(self).__name__)
        self._pending, self._pos = [], 0
        _load_into(self._indices, state["indices"])
