"""coerce_data_source: turn arrays, iterators or callables into a data source."""
from __future__ import annotations

import collections.abc
from typing import Any

from batchup.sources.array import ArrayDataSource
from batchup.sources.base import AbstractDataSource
from batchup.sources.callable import CallableDataSource
from batchup.sources.iterator import IteratorDataSource

__all__ = ["coerce_data_source"]


def coerce_data_source(x: Any) -> AbstractDataSource:
    """Return ``x`` as a data source.

    A data source is returned as is; a list or tuple of array-likes becomes
    an :class:`ArrayDataSource`; an iterator an :class:`IteratorDataSource`;
    a callable a :class:`CallableDataSource`.

    Parameters
    ----------
    x : AbstractDataSource, list or tuple of array-likes, iterator or callable
        What to make a source of (array-likes need ``__len__`` and
        ``__getitem__``; a callable is ``fn(batch_size, **kwargs)`` returning
        an iterator of batches).

    Returns
    -------
    AbstractDataSource
        ``x`` itself, or a new source wrapping it.

    Raises
    ------
    ValueError
        For an empty list or tuple.
    TypeError
        For a sequence holding something that is not array-like (a data
        source or a number, say) and for any other kind of object.

    Examples
    --------
    >>> import numpy as np
    >>> type(coerce_data_source([np.zeros(3)])).__name__
    'ArrayDataSource'
    """
    if isinstance(x, AbstractDataSource):
        return x
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("cannot make a data source from an empty sequence")
        for i, a in enumerate(x):
            if isinstance(a, AbstractDataSource) or not (hasattr(a, "__getitem__") and hasattr(a, "__len__")):
                raise TypeError(
                    f"element {i} of the sequence is not array-like (needs __len__ and "
                    f"__getitem__): {type(a).__name__}"
                )
        return ArrayDataSource(list(x))
    if isinstance(x, collections.abc.Iterator):
        return IteratorDataSource(x)
    if callable(x):
        return CallableDataSource(x)
    raise TypeError(
        "cannot make a data source from a "
        f"{type(x).__name__}: pass a data source, a list of arrays, an iterator or a callable"
    )
