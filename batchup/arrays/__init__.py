"""Array-likes for data that does not sit in memory.

:class:`FileArray` reads one file per sample, lazily; :mod:`.sorted_reads`
makes memory-mapped, h5py and zarr arrays read a batch's rows in file order;
:class:`RowView` gives arrays without ``__len__`` (zarr 3) the array-like
interface.
They all plug into :class:`~batchup.sources.ArrayDataSource` like any array.
"""
from __future__ import annotations

from batchup.arrays.file_array import FileArray
from batchup.arrays.loaders import read_image, read_npy
from batchup.arrays.row_view import RowView
from batchup.arrays.sorted_reads import gather, sorted_gather, wants_sorted_reads

__all__ = ["FileArray", "RowView", "gather", "read_image", "read_npy", "sorted_gather", "wants_sorted_reads"]
