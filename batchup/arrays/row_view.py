"""RowView: give a shaped array without ``__len__`` (zarr 3) the array-like interface.

:class:`~batchup.sources.ArrayDataSource` needs ``len(d)`` and
``d[index_array]``. zarr 3 arrays (and some other storage-backed arrays)
have a ``shape`` and ``__getitem__`` but no ``__len__``; wrapping one in
:class:`RowView` adds it, and reads still go through sorted reads.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup.arrays.sorted_reads import _known_kind, gather, sorted_gather, wants_sorted_reads

__all__ = ["RowView"]


class RowView:
    """Expose the rows (axis 0) of a shaped array as an array-like.

    Parameters
    ----------
    array : object with ``shape`` and ``__getitem__``
        For example a ``zarr.Array``, an h5py dataset or a memmap.

    Raises
    ------
    TypeError
        If ``array`` has no ``shape`` with at least one dimension, or no
        ``__getitem__``.

    Notes
    -----
    Indexing with an integer array uses the same rule as
    :class:`~batchup.sources.ArrayDataSource` (sorted reads for memmap,
    h5py and zarr arrays), so the rows come back in the order asked for.

    Examples
    --------
    >>> import numpy as np
    >>> class Shaped:                      # like a zarr 3 array: no __len__
    ...     def __init__(self, a):
    ...         self.a, self.shape = a, a.shape
    ...     def __getitem__(self, idx):
    ...         return self.a[idx]
    >>> rows = RowView(Shaped(np.arange(10) * 10))
    >>> len(rows), rows[np.array([7, 2])].tolist()
    (10, [70, 20])
    """

    def __init__(self, array: Any) -> None:
        shape = getattr(array, "shape", None)
        if shape is None or len(shape) < 1 or not hasattr(array, "__getitem__"):
            raise TypeError(
                f"RowView needs an array with a shape of at least 1 dimension and __getitem__, "
                f"got {type(array).__name__}"
            )
        self.array = array
        self.__batchup_sorted_reads__ = wants_sorted_reads(array)

    @property
    def shape(self) -> tuple:
        """The shape of the wrapped array (its first entry is ``len()``)."""
        return tuple(self.array.shape)

    @property
    def dtype(self) -> Any:
        """The dtype of the wrapped array, or ``None`` if it has none."""
        return getattr(self.array, "dtype", None)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (np.ndarray, list)):
            index = np.asarray(index)
            if index.ndim == 1 and (index.dtype.kind in "iu" or index.size == 0):
                index = index.astype(np.intp, copy=False)
                if _known_kind(self.array) or self.__batchup_sorted_reads__:
                    return sorted_gather(self.array, index)
                return gather(self.array, index)
        return self.array[index]

    def __repr__(self) -> str:
        return f"RowView({type(self.array).__name__} of shape {self.shape})"
