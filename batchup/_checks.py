"""Tiny argument validators shared by every module.

Each validator checks one argument and raises an error whose message names
the argument, the value received and what was expected, so that the error
reads well wherever it surfaces.
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # typing.TypeGuard is Python 3.10+; annotations are not evaluated at run time
    from typing import TypeGuard

__all__ = [
    "as_count",
    "index_array",
    "is_int",
    "positive_int",
    "repeats_value",
]


def is_int(value: Any) -> TypeGuard[int | np.integer]:
    """Return True for Python and NumPy integers, False for bools and all else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (bools and floats are rejected).
    ValueError
        If ``value`` is zero or negative.
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def repeats_value(value: Any, name: str = "repeats") -> int | None:
    """Translate the public ``repeats`` spelling to the internal one.

    ``-1`` (repeat forever) becomes ``None``; a positive integer is returned
    as an ``int``.
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int (>= 1, or -1 for forever), got {value!r}")
    if value == -1:
        return None
    if value < 1:
        raise ValueError(f"{name} must be >= 1 or -1 (forever), got {value!r}")
    return int(value)


def as_count(name: str, value: Any) -> Any:
    """Check a sample count given as ``None``, an int or ``np.inf``.

    Callables are passed through untouched; anything else raises TypeError.
    """
    if value is None or callable(value):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if is_int(value):
        return int(value)
    if isinstance(value, float) and value == np.inf:
        return value
    raise TypeError(
        f"{name} must be None, an int, np.inf or a callable, got {value!r} "
        f"of type {type(value).__name__}"
    )


def index_array(name: str, value: Any, length: int | None = None) -> np.ndarray:
    """Return ``value`` as a 1-D integer index array, checked against ``length``.

    Raises
    ------
    TypeError
        If the values are not integers (a boolean mask is rejected too).
    ValueError
        If the array is not 1-D.
    IndexError
        If an index is negative or not below ``length``.
    """
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D integer array, got an array of shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.size == 0:
            arr = arr.astype(np.intp)
        else:
            raise TypeError(f"{name} must be a 1-D integer array, got dtype {arr.dtype}")
    if arr.size:
        lo = int(arr.min())
        if lo < 0:
            raise IndexError(f"{name} contains the negative index {lo}; indices must be >= 0")
        if length is not None:
            hi = int(arr.max())
            if hi >= length:
                raise IndexError(
                    f"{name} contains the index {hi} but the data has only {length} samples"
                )
    return arr
