"""ArrayDataSource: batches gathered from a list of arrays or array-likes.

An array-like is anything with ``__len__`` and a ``__getitem__`` that
accepts a 1-D integer index array (NumPy arrays, memmaps, h5py datasets,
lazy loaders). NumPy arrays are gathered with ``np.take(..., axis=0)``, and
when a sampler offers several whole batches inside one epoch they are
gathered with a single call and handed out one by one, which is what makes
batchup as fast as a hand-written loop.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup._checks import index_array
from batchup.arrays import sorted_reads as _sorted_reads
from batchup.samplers.plan import plan_options
from batchup.sources.base import BatchIterator, RandomAccessDataSource

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

        Parameters
        ----------
        indices : 1-D array-like of int, or slice
            Absolute sample indices, in the order wanted.

        Returns
        -------
        tuple of arrays
            One array per array of ``data`` (``np.take`` for ndarrays, sorted
            reads for memmap, h5py and zarr arrays), each with a row per index;
            ``indices`` first with ``include_indices``.
        """
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(self._length))
        else:
            indices = np.asarray(indices)
        batch = tuple(_gather(d, indices) for d in self.data)
        if self.include_indices:
            return (indices,) + batch
        return batch

    def span_batches(self, batch_size: int | None) -> int:
        """Return how many batches one grouped ``np.take`` gathers (plain ndarrays only).

        Parameters
        ----------
        batch_size : int or None
            The batch size being iterated.

        Returns
        -------
        int
            Up to :data:`CHUNK_BATCHES`, fewer when the gathered block would
            exceed :data:`CHUNK_BYTES`; 1 unless every array is a plain ndarray.
        """
        if not batch_size or not all(type(d) is np.ndarray for d in self.data):
            return 1
        row_bytes = sum(d.itemsize * (d.size // max(len(d), 1)) for d in self.data) + 8
        return int(max(1, min(CHUNK_BATCHES, CHUNK_BYTES // (row_bytes * batch_size))))

    def fetch_span(self, indices: Any, count: int, first_number: int) -> list:
        """Gather ``count`` equal batches with one ``np.take`` per array and hand out slices of the block.

        Each batch is a slice of a freshly gathered block, so it is still
        independent of the source arrays and of the other batches' memory
        as far as the user can tell (it never aliases ``data``).

        Parameters
        ----------
        indices : numpy.ndarray of int
            The absolute indices of ``count`` consecutive batches of equal size.
        count : int
            The number of batches.
        first_number : int
            The batch number of the first (unused: an array source is not seeded).

        Returns
        -------
        list of tuple
            ``count`` batches, each a tuple of arrays as :meth:`batch_iterator` yields.
        """
        cols = [np.take(d, indices, axis=0) for d in self.data]
        if self.include_indices:
            cols.insert(0, indices)
        size = len(indices) // count
        return [tuple([c[i : i + size] for c in cols]) for i in range(0, count * size, size)]

    def batch_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> BatchIterator:
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
        **kwargs
            Keyword-only iteration options:

            drop_last : bool, default False
                Drop a final short batch.
            shard : (rank, num_shards) or ShardSpec, optional
                This rank's part of every epoch; every rank gets the same
                number of batches (see
                :meth:`~batchup.sources.RandomAccessDataSource.batch_iterator`).
            epoch : int, default 0
                Which pass over the data; with an int seed pass ``e`` has its
                own order.

        Returns
        -------
        BatchIterator
            Iterator of tuples of arrays, with ``len()``, ``state_dict()`` and
            ``load_state_dict()`` for exact resume.

        Raises
        ------
        TypeError
            For an unknown keyword argument (``shufle=1`` is an error, not
            in-order batches) or a ``drop_last`` that is not a bool.
        """
        plan = self._plan(batch_size, plan_options("ArrayDataSource.batch_iterator", kwargs, shuffle))
        return BatchIterator(self, plan)

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
    # A subset sampler names the samples it draws; others say how many samples they cover.
    indices = getattr(sampler, "indices", None)
    if indices is not None:
        index_array("sampler.indices", indices, length)
        return
    covers = getattr(sampler, "length", None)
    if covers is not None and covers != length:
        raise ValueError(f"sampler is sized for {covers} samples but the data has {length} samples")


def _gather(d: Any, indices: np.ndarray) -> Any:
    if type(d) is np.ndarray:
        return np.take(d, indices, axis=0)
    # memmaps, h5py/zarr arrays and opted-in array-likes read in sorted order
    # and restore the sampled order; other array-likes get ``d[indices]``.
    return _sorted_reads.gather(d, indices)


#: The serial iterator of an ArrayDataSource (grouped gathers are :meth:`ArrayDataSource.fetch_span`).
ArrayBatchIterator = BatchIterator
