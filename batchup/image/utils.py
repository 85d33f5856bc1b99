"""Lazy views over image arrays.

Standard datasets keep their pixels as uint8 on disk (a quarter of the size
of float32). :class:`ImageArrayUInt8ToFloat32` presents such an array as
float32 without converting it up front: only the samples a batch asks for are
scaled, when they are indexed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ImageArrayUInt8ToFloat32"]


class ImageArrayUInt8ToFloat32:
    """Read-only float32 view of a uint8 image array, converted when indexed.

    Parameters
    ----------
    arr_u8 : array-like of uint8
        The wrapped array (NumPy array, memmap or any object with
        ``__len__`` and ``__getitem__``).
    val_lower : float, default 0.0
        The value pixel 0 maps to.
    val_upper : float, default 1.0
        The value pixel 255 maps to.

    Attributes
    ----------
    arr_u8 : array-like
        The wrapped array.
    offset : numpy.float32
        ``val_lower``.
    scale : numpy.float32
        ``(val_upper - val_lower) / 255``.
    dtype : type
        ``numpy.float32``.

    Notes
    -----
    ``x[idx]`` returns ``arr_u8[idx].astype(np.float32) * scale + offset``,
    so any index the wrapped array accepts works (ints, slices, integer
    arrays, ``...``). The wrapper is usable as an array-like in
    :class:`batchup.sources.ArrayDataSource`. There is no ``__setitem__``.

    Examples
    --------
    >>> import numpy as np
    >>> x = ImageArrayUInt8ToFloat32(np.array([[0, 51], [102, 255]], dtype=np.uint8))
    >>> x.shape, x.dtype == np.float32, len(x)
    ((2, 2), True, 2)
    >>> x[1]
    array([0.4, 1. ], dtype=float32)
    >>> ImageArrayUInt8ToFloat32(np.array([0, 255], dtype=np.uint8), -1.0, 1.0)[:]
    array([-1.,  1.], dtype=float32)
    """

    def __init__(self, arr_u8: Any, val_lower: float = 0.0, val_upper: float = 1.0) -> None:
        self.arr_u8 = arr_u8
        self.offset = np.float32(val_lower)
        self.scale = np.float32((val_upper - val_lower) / 255.0)
        self.dtype = np.float32

    @property
    def shape(self) -> tuple[int, ...]:
        """The wrapped array's shape (``AttributeError`` if it has none)."""
        return self.arr_u8.shape

    @property
    def ndim(self) -> int:
        """The number of dimensions of the wrapped array."""
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.arr_u8)

    def __getitem__(self, index: Any) -> Any:
        return np.asarray(self.arr_u8[index]).astype(np.float32) * self.scale + self.offset

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return (f"ImageArrayUInt8ToFloat32(shape={getattr(self.arr_u8, 'shape', '?')}, "
                f"offset={float(self.offset)!r}, scale={float(self.scale)!r})")
