"""DataFrameSource: batches from a table, encoded per column by pre-fitted encoders.

The table is a pandas DataFrame or a dict of equally long columns. The user
declares what a batch looks like with ``x_structure`` and ``y_structure``
(see :mod:`batchup.tables.structure`); each batch is ``(x, y)`` with ``x``
and ``y`` shaped like those declarations. The source is random access, so
every sampler, shuffling, resuming and the worker pools work with it.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchup.sources.base import RandomAccessDataSource
from batchup.tables.encoding import encode_leaf, n_classes_of
from batchup.tables.structure import leaves, map_structure, parse_structure

__all__ = ["DataFrameSource", "UnknownColumnError"]


class UnknownColumnError(KeyError, ValueError):
    """A structure names a column the table does not have (a KeyError and a ValueError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataFrameSource(RandomAccessDataSource):
    """Draw batches from a DataFrame, encoding columns with pre-fitted encoders.

    Parameters
    ----------
    data : pandas.DataFrame or dict of 1-D array-likes
        The table, one row per sample. Only the columns named in the
        structures are read (once, into NumPy arrays).
    x_structure : structure
        The inputs: a ``(column, encoder)`` pair, a column name, or nested
        tuples/lists of them (see :mod:`batchup.tables.structure`). The
        encoder is anything pre-fitted with a ``transform`` method (sklearn's
        ``LabelEncoder``, ``LabelBinarizer``, ``OneHotEncoder``,
        ``StandardScaler`` ...) or ``None`` for the raw values.
    y_structure : structure, optional
        The targets, declared the same way. Without it batches are ``(x,)``.
    indices, repeats, sampler, include_indices
        As for :class:`~batchup.sources.ArrayDataSource`.

    Attributes
    ----------
    shape : structure of tuples
        ``(x_shapes, y_shapes)``: per output the shape of a batch with the
        batch dimension ``None``, e.g. ``(None,)`` for a LabelEncoder and
        ``(None, 3)`` for a 3-class LabelBinarizer.
    n_classes : structure of int or None
        ``(x_classes, y_classes)``: per output the number of categories the
        encoder knows (see :func:`~batchup.tables.encoding.n_classes_of`).

    Raises
    ------
    UnknownColumnError
        (a ``KeyError`` and ``ValueError``) if a structure names a column
        the table lacks; the message lists the columns it has.
    TypeError
        If an encoder has no ``transform`` method, or a structure element is
        neither a column, a pair nor a tuple/list.
    ValueError
        If the columns of a dict differ in length; per batch, if an encoder
        returns a number of rows other than the batch size.

    Notes
    -----
    Each encoder is called once per batch and output on all of the batch's
    rows (never row by row). Batches are fresh arrays; the table is not
    modified. The source pickles (to worker processes) when its encoders do.

    Examples
    --------
    >>> import numpy as np
    >>> class Scale:
    ...     def transform(self, x):
    ...         return np.asarray(x, dtype=float) / 10
    >>> table = {"size": [10, 20, 30, 40, 50], "label": [0, 1, 0, 1, 1]}
    >>> ds = DataFrameSource(table, x_structure=("size", Scale()), y_structure="label")
    >>> for x, y in ds.batch_iterator(batch_size=2):
    ...     print(x.tolist(), y.tolist())
    [1.0, 2.0] [0, 1]
    [3.0, 4.0] [0, 1]
    [5.0] [1]
    >>> ds.shape
    ((None,), (None,))

    Groups mirror the declaration, so a two-input model gets a list:

    >>> ds = DataFrameSource(table, x_structure=["size", ("size", Scale())], y_structure="label")
    >>> (x1, x2), y = ds.samples_by_indices(np.array([4, 0]))
    >>> x1.tolist(), x2.tolist(), y.tolist()
    ([50, 10], [5.0, 1.0], [1, 0])
    """

    def __init__(
        self,
        data: Any,
        x_structure: Any,
        y_structure: Any = None,
        indices: Any = None,
        repeats: int = 1,
        sampler: Any = None,
        include_indices: bool = False,
    ) -> None:
        x_parsed = parse_structure(x_structure, "x_structure")
        y_parsed = None if y_structure is None else parse_structure(y_structure, "y_structure")
        wanted = leaves(x_parsed) + ([] if y_parsed is None else leaves(y_parsed))
        columns = _read_columns(data, wanted)
        length = len(next(iter(columns.values())))
        super().__init__(length, indices=indices, repeats=repeats, sampler=sampler, include_indices=include_indices)
        self.x_structure = x_parsed
        self.y_structure = y_parsed
        self._columns = columns
        self._shape: Any = None

    @property
    def columns(self) -> tuple:
        """The names of the columns the structures read, in first-use order."""
        return tuple(self._columns)

    def samples_by_indices_nomapping(self, indices: Any) -> tuple:
        """Return ``(x, y)`` (or ``(x,)``) for the rows at absolute ``indices``.

        Parameters
        ----------
        indices : 1-D array-like of int, or slice
            DataFrame rows (positions, not index labels), in the order wanted.

        Returns
        -------
        tuple
            ``x`` and ``y`` shaped like ``x_structure`` and ``y_structure``
            (an array per leaf, in the declared tuples and lists); the
            indices first with ``include_indices``.
        """
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(self._length))
        else:
            indices = np.asarray(indices)
        rows = {name: np.take(col, indices, axis=0) for name, col in self._columns.items()}
        n = len(indices)
        batch: tuple = (map_structure(lambda leaf: encode_leaf(leaf, rows, n), self.x_structure),)
        if self.y_structure is not None:
            batch += (map_structure(lambda leaf: encode_leaf(leaf, rows, n), self.y_structure),)
        if self.include_indices:
            batch = (indices,) + batch
        return batch

    @property
    def shape(self) -> Any:
        """Per output, the shape of a batch with ``None`` for the batch dimension."""
        if self._shape is None:
            if self._length == 0:
                raise ValueError("cannot infer the output shapes of an empty table")
            rows = {name: col[:1] for name, col in self._columns.items()}
            shapes = map_structure(lambda leaf: (None,) + encode_leaf(leaf, rows, 1).shape[1:], self.x_structure)
            if self.y_structure is not None:
                y_shapes = map_structure(lambda leaf: (None,) + encode_leaf(leaf, rows, 1).shape[1:], self.y_structure)
                shapes = (shapes, y_shapes)
            self._shape = shapes
        return self._shape

    @property
    def n_classes(self) -> Any:
        """Per output, the number of categories of its encoder (None if not categorical)."""
        xs = map_structure(lambda leaf: n_classes_of(leaf.encoder), self.x_structure)
        if self.y_structure is None:
            return xs
        return xs, map_structure(lambda leaf: n_classes_of(leaf.encoder), self.y_structure)

    def __repr__(self) -> str:
        return f"DataFrameSource(<{self._length} rows, columns {list(self._columns)}>, sampler={self.sampler!r})"


def _read_columns(data: Any, wanted: list) -> dict:
    """Return ``{name: 1-D ndarray}`` for every column the leaves name."""
    if _is_pandas_frame(data):
        available = list(data.columns)

        def get(name: Any) -> np.ndarray:
            return data[name].to_numpy()
    elif isinstance(data, Mapping):
        available = list(data.keys())

        def get(name: Any) -> np.ndarray:
            return np.asarray(data[name])
    else:
        raise TypeError(
            f"data must be a pandas DataFrame or a dict of columns, got {type(data).__name__}"
        )
    columns: dict = {}
    for leaf in wanted:
        for name in leaf.columns:
            if name in columns:
                continue
            if name not in available:
                raise UnknownColumnError(
                    f"{leaf.where}: unknown column {name!r}; the table has the columns {available}"
                )
            col = get(name)
            if col.ndim != 1:
                raise ValueError(f"column {name!r} must be one-dimensional, got shape {col.shape}")
            columns[name] = col
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"all columns must have the same length, got {lengths}")
    return columns


def _is_pandas_frame(data: Any) -> bool:
    # Recognised by type, so pandas is imported only by users who have it.
    cls = type(data)
    return cls.__module__.partition(".")[0] == "pandas" and hasattr(data, "columns")
