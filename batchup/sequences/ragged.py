"""RaggedArray: samples of different lengths stored as one flat array plus offsets.

Text, audio, time series and molecules come in samples of different lengths.
A :class:`RaggedArray` keeps all of them in a single ``values`` array of
shape ``(total_length, *feature_shape)`` and marks where each sample starts
with ``offsets`` (``n + 1`` integers, from 0 to ``total_length``). Memory is
O(total length) and there is no Python object per sample, so it can stand
wherever an array stands in a source: ``ArrayDataSource([ra, y])`` gathers
a batch with ``ra[index_array]``, which builds the gather positions with
NumPy arithmetic and copies the tokens with one ``np.take``.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from batchup._checks import is_int
from batchup.arrays.sorted_reads import wants_sorted_reads

__all__ = ["RaggedArray", "as_ragged"]


class RaggedArray:
    """Samples of different lengths along their first axis, in one flat array.

    Sample ``i`` is ``values[offsets[i]:offsets[i + 1]]``; its length is
    ``offsets[i + 1] - offsets[i]``. Samples may be N-D with a variable first
    axis (frames x features): ``values`` then has shape
    ``(total_length, *feature_shape)`` and every sample has the same
    ``feature_shape``.

    Parameters
    ----------
    values : array-like
        The samples one after another along axis 0 (at least 1-D, any
        non-object dtype). An ``ndarray`` (a ``np.memmap`` too) is kept as
        given, not copied.
    offsets : 1-D array-like of int
        ``n + 1`` non-decreasing integers: ``offsets[0] == 0`` and
        ``offsets[-1] == len(values)``. Kept as a read-only int64 array
        (copied only if it has another dtype).

    Raises
    ------
    TypeError
        If ``values`` has an object dtype, or ``offsets`` is not integer.
    ValueError
        If ``values`` is 0-d, ``offsets`` is not 1-D or is empty, does not
        start at 0, decreases anywhere (the message names the first position
        and the negative length it would give), or does not end at
        ``len(values)``.

    See Also
    --------
    pad_batch : a ragged batch as one padded array, with lengths and a mask.
    pack_sequences : a ragged batch packed into rows of a fixed length.

    Notes
    -----
    **Empty samples** (length 0, equal consecutive offsets) are allowed: a
    container holds what it is given. :func:`pad_batch` pads them like any
    sample; :func:`pack_sequences` rejects them because a packed row cannot
    show a segment without tokens.

    **Indexing.** ``ra[i]`` (an int, negative counts from the end) returns
    sample ``i`` as a *view* of ``values``, as ``a[i]`` does for an
    ``ndarray`` row. ``ra[start:stop]`` returns a ``RaggedArray`` whose
    values are a view (its offsets are new). Everything else returns a
    ``RaggedArray`` that owns its data: an integer index array (any order,
    repeats allowed), a boolean mask of length ``len(ra)``, a slice with a
    step other than 1. batchup always gathers batches with index arrays, so
    a batch never aliases the source, as for every other array.

    **Gathers** are vectorised: the positions of the wanted tokens come from
    ``np.repeat`` and ``np.cumsum`` over the sample lengths, then one
    ``np.take`` copies them. A contiguous increasing run of samples is one
    slice copy. When ``values`` is a ``np.memmap`` (or opts in with
    ``__batchup_sorted_reads__``), the distinct samples are read in
    increasing order and reordered in memory, so storage is read in file
    order. A ``RaggedArray`` itself opts out of the core's sorted-read path
    (``__batchup_sorted_reads__ = False``): it sorts its own reads.

    **No rectangular form.** ``np.asarray(ra)`` raises ``TypeError`` (a
    silent object array would be wrong data). Use :func:`pad_batch` for a
    padded array, or ``ra.values`` and ``ra.offsets``.

    **Pickling** stores ``values`` and ``offsets`` only, so a
    ``RaggedArray`` crosses to worker processes compactly; in batchup's
    process pools both arrays travel through shared memory like any other
    array of a batch or a source.

    Examples
    --------
    >>> import numpy as np
    >>> ra = RaggedArray.from_list([[1, 2, 3], [4], [5, 6]])
    >>> len(ra), ra.lengths.tolist(), ra.offsets.tolist()
    (3, [3, 1, 2], [0, 3, 4, 6])
    >>> ra[0].tolist()
    [1, 2, 3]
    >>> ra[np.array([2, 0])].to_list()
    [array([5, 6]), array([1, 2, 3])]

    Samples of frames x features:

    >>> frames = RaggedArray(np.zeros((7, 4), np.float32), [0, 5, 7])
    >>> frames.feature_shape, frames[1].shape
    ((4,), (2, 4))
    """

    __slots__ = ("_offsets", "_values")
    #: Tell :mod:`batchup.arrays.sorted_reads` to index this object directly.
    __batchup_sorted_reads__ = False

    def __init__(self, values: Any, offsets: Any) -> None:
        values = _check_values(values)
        self._values = values
        self._offsets = _check_offsets(offsets, len(values))

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_list(cls, samples: Sequence[Any], *, dtype: Any = None) -> RaggedArray:
        """Return a RaggedArray holding a copy of ``samples``.

        Parameters
        ----------
        samples : sequence of array-like
            Each sample at least 1-D; all with the same shape after axis 0.
        dtype : dtype, optional
            Keyword-only. The dtype of ``values`` (default: NumPy's result
            type of the samples; float64 for an empty list).

        Returns
        -------
        RaggedArray
            The samples concatenated into one ``values`` array (a copy).

        Raises
        ------
        ValueError
            If a sample is a scalar or its feature shape differs from the
            first sample's (the message names the sample).

        Examples
        --------
        >>> RaggedArray.from_list([[1.5], [], [2.5, 3.5]]).lengths.tolist()
        [1, 0, 2]
        """
        arrays = [np.asarray(s, dtype=dtype) for s in samples]
        if not arrays:
            return cls._trusted(np.zeros(0, dtype=dtype), np.zeros(1, np.int64))
        feature_shape = arrays[0].shape[1:]
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"sample {i} is a scalar; every sample needs at least 1 dimension (its length)")
            if a.shape[1:] != feature_shape:
                raise ValueError(
                    f"sample {i} has shape {a.shape} but sample 0 has shape {arrays[0].shape}; "
                    "samples may differ only along their first axis"
                )
        if arrays[0].dtype.hasobject:
            raise TypeError("samples must hold numbers, not Python objects (got dtype object)")
        lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
        return cls._trusted(np.concatenate(arrays, axis=0), _offsets_of(lengths))

    @classmethod
    def from_lengths(cls, values: Any, lengths: Any) -> RaggedArray:
        """Return a RaggedArray over ``values`` cut into samples of ``lengths``.

        Parameters
        ----------
        values : array-like
            As in the constructor (not copied if it is an ``ndarray``).
        lengths : 1-D array-like of int
            One non-negative length per sample, summing to ``len(values)``.

        Returns
        -------
        RaggedArray
            ``len(lengths)`` samples; sample ``i`` is the next ``lengths[i]``
            entries of ``values``.

        Raises
        ------
        TypeError
            If ``lengths`` is not integer.
        ValueError
            If a length is negative (the message names the first such
            sample and its length) or the lengths do not sum to
            ``len(values)``.

        Examples
        --------
        >>> import numpy as np
        >>> RaggedArray.from_lengths(np.arange(5), [2, 3]).to_list()
        [array([0, 1]), array([2, 3, 4])]
        """
        values = _check_values(values)
        lens = _int_array("lengths", lengths)
        bad = np.flatnonzero(lens < 0)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"lengths must not be negative: sample {i} has length {int(lens[i])}")
        total = int(lens.sum())
        if total != len(values):
            raise ValueError(f"lengths sum to {total} but values holds {len(values)} entries along axis 0")
        return cls._trusted(values, _offsets_of(lens.astype(np.int64, copy=False)))

    @classmethod
    def _trusted(cls, values: np.ndarray, offsets: np.ndarray) -> RaggedArray:
        """Build from arrays known to be valid (no checks): the gather paths use it."""
        obj = object.__new__(cls)
        obj._values = values
        obj._offsets = _read_only(offsets)
        return obj

    # -- the array-like interface --------------------------------------------------------

    @property
    def values(self) -> np.ndarray:
        """The samples one after another, shape ``(total_length, *feature_shape)``."""
        return self._values

    @property
    def offsets(self) -> npt.NDArray[np.int64]:
        """``len(self) + 1`` read-only int64 offsets into :attr:`values`."""
        return self._offsets

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        """The length of every sample (a new int64 array, ``np.diff(offsets)``)."""
        return np.diff(self._offsets)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of :attr:`values`."""
        return self._values.dtype

    @property
    def feature_shape(self) -> tuple:
        """The shape every sample has after its first (variable) axis."""
        return tuple(self._values.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes held by :attr:`values` and :attr:`offsets`."""
        return int(self._values.nbytes + self._offsets.nbytes)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, key: Any) -> Any:
        n = len(self)
        if is_int(key):
            i = int(key)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of range for a RaggedArray of {n} samples")
            i %= n
            return self._values[self._offsets[i] : self._offsets[i + 1]]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                stop = max(start, stop)
                lo, hi = int(self._offsets[start]), int(self._offsets[stop])
                return RaggedArray._trusted(self._values[lo:hi], self._offsets[start : stop + 1] - lo)
            return self._take(np.arange(start, stop, step, dtype=np.int64))
        if isinstance(key, tuple):
            raise TypeError(
                "a RaggedArray takes one index (an int, a slice, an index array or a boolean mask), "
                f"got a tuple of {len(key)}; index the sample first, e.g. ra[i][j]"
            )
        return self._take(_index_array(key, n))

    def _take(self, idx: np.ndarray) -> RaggedArray:
        """Gather the samples ``idx`` (a checked, non-negative int64 array) into a new RaggedArray."""
        values, offsets = self._values, self._offsets
        k = len(idx)
        if k > 1 and int(idx[-1]) - int(idx[0]) == k - 1 and bool(np.all(np.diff(idx) == 1)):
            lo, hi = int(offsets[idx[0]]), int(offsets[idx[-1] + 1])
            return RaggedArray._trusted(_plain(values[lo:hi].copy()), offsets[idx[0] : idx[-1] + 2] - lo)
        if k > 1 and wants_sorted_reads(values) and not bool(np.all(np.diff(idx) > 0)):
            # Read each distinct sample once, in file order, then reorder in memory.
            uniq, inverse = np.unique(idx, return_inverse=True)
            return self._take(uniq)._take(inverse.reshape(-1).astype(np.int64, copy=False))
        starts = offsets[idx]
        lens = offsets[idx + 1] - starts
        new_offsets = _offsets_of(lens)
        positions = _run_positions(starts, lens, new_offsets)
        return RaggedArray._trusted(_plain(np.take(values, positions, axis=0)), new_offsets)

    # -- conversions -------------------------------------------------------------------------

    def to_list(self) -> list:
        """Return the samples as a list of arrays that do not alias :attr:`values`.

        Returns
        -------
        list of numpy.ndarray
            One array per sample, of shape ``(length, *feature_shape)``.
        """
        if len(self) == 0:
            return []
        return np.split(np.array(self._values), self._offsets[1:-1])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            "a RaggedArray has samples of different lengths and no rectangular array form; "
            "use batchup.sequences.pad_batch(ra) for a padded array and the lengths, "
            "or ra.values and ra.offsets for the flat data"
        )

    def __reduce__(self) -> tuple:
        # Two arrays, nothing per sample; batchup's process pools send both through shared memory.
        return (RaggedArray, (self._values, self._offsets))

    def __repr__(self) -> str:
        lens = self.lengths
        shown = ", ".join(str(int(x)) for x in lens[:6]) + (", ..." if len(lens) > 6 else "")
        feat = f", feature_shape={self.feature_shape}" if self.feature_shape else ""
        return f"RaggedArray(<{len(self)} samples, lengths [{shown}], dtype={self.dtype}{feat}>)"


def as_ragged(batch: Any, name: str = "batch") -> RaggedArray:
    """Return ``batch`` as a RaggedArray: itself, or a copy of a list/tuple/array of samples.

    Parameters
    ----------
    batch : RaggedArray, or list, tuple or array of samples
        A ragged batch in any of the forms batchup's sequence tools accept.
    name : str, default "batch"
        The argument's name, for the message.

    Returns
    -------
    RaggedArray
        ``batch`` itself, or a new one built with :meth:`RaggedArray.from_list`.

    Raises
    ------
    TypeError
        If ``batch`` is neither a RaggedArray nor a list, tuple or array of samples.
    """
    if isinstance(batch, RaggedArray):
        return batch
    if isinstance(batch, (list, tuple, np.ndarray)):
        return RaggedArray.from_list(list(batch))
    raise TypeError(
        f"{name} must be a RaggedArray or a list of arrays (one per sample), got {type(batch).__name__}"
    )


# -- helpers ----------------------------------------------------------------------------------


def _check_values(values: Any) -> np.ndarray:
    if not isinstance(values, np.ndarray):
        values = np.asarray(values)
    if values.ndim == 0:
        raise ValueError("values must have at least 1 dimension (the samples' entries along axis 0), got a 0-d array")
    if values.dtype.hasobject:
        raise TypeError("values must hold numbers, not Python objects (got dtype object)")
    return values


def _int_array(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D integer array, got an array of shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.size == 0:
            return arr.astype(np.int64)
        raise TypeError(f"{name} must be a 1-D integer array, got dtype {arr.dtype}")
    return arr


def _check_offsets(offsets: Any, total: int) -> np.ndarray:
    arr = _int_array("offsets", offsets)
    if len(arr) == 0:
        raise ValueError("offsets must hold at least one entry (offsets == [0] for no samples)")
    if int(arr[0]) != 0:
        raise ValueError(f"offsets must start at 0, got offsets[0] = {int(arr[0])}")
    steps = np.diff(arr.astype(np.int64, copy=False))
    bad = np.flatnonzero(steps < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"offsets must not decrease: offsets[{i + 1}] = {int(arr[i + 1])} < offsets[{i}] = {int(arr[i])} "
            f"(sample {i} would have length {int(steps[i])})"
        )
    if int(arr[-1]) != total:
        raise ValueError(f"the last offset must equal len(values) = {total}, got offsets[-1] = {int(arr[-1])}")
    return _read_only(arr.astype(np.int64, copy=False))


def _read_only(arr: np.ndarray) -> np.ndarray:
    view = arr.view(np.ndarray)
    view.flags.writeable = False
    return view


def _offsets_of(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _run_positions(starts: np.ndarray, lens: np.ndarray, new_offsets: np.ndarray) -> np.ndarray:
    """Return the concatenated ranges ``starts[j] .. starts[j] + lens[j]`` as one index array.

    ``new_offsets`` is ``_offsets_of(lens)``. Entry ``t`` of the result is
    ``t`` plus the shift of the run it falls in: one ``np.repeat`` and one
    ``np.arange``, no loop over runs.
    """
    total = int(new_offsets[-1])
    return np.repeat(starts - new_offsets[:-1], lens) + np.arange(total, dtype=np.int64)


def _index_array(key: Any, n: int) -> np.ndarray:
    """Return ``key`` (int array or boolean mask) as non-negative int64 sample indices."""
    idx = np.asarray(key)
    if idx.dtype == np.bool_:
        if idx.shape != (n,):
            raise IndexError(f"a boolean mask must have shape ({n},) for a RaggedArray of {n} samples, got {idx.shape}")
        return np.flatnonzero(idx).astype(np.int64, copy=False)
    if idx.dtype.kind not in "iu":
        if idx.size == 0:
            return np.zeros(0, np.int64)
        raise TypeError(
            f"a RaggedArray is indexed by an int, a slice, an integer array or a boolean mask, got dtype {idx.dtype}"
        )
    if idx.ndim != 1:
        raise IndexError(f"an index array must be 1-D, got shape {idx.shape}")
    idx = idx.astype(np.int64, copy=False)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -n or hi >= n:
            bad = lo if lo < -n else hi
            raise IndexError(f"index {bad} is out of range for a RaggedArray of {n} samples")
        if lo < 0:
            idx = np.where(idx < 0, idx + n, idx)
    return idx


def _plain(x: np.ndarray) -> np.ndarray:
    # np.take / copy on a memmap return np.memmap objects that own no file; batches are plain ndarrays.
    return x if type(x) is np.ndarray else x.view(np.ndarray)
