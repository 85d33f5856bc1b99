"""InventorySource: batches made by encoders from the records of an inventory.

An inventory lists the samples, one record per row (a file name and its
label, a URL and its class, ...). For each batch the data encoder turns the
batch's records into the inputs (loading files, fetching URLs) and the
target encoder into the targets. The source is random access, so samplers,
shuffling, resume and the worker pools work with it as with arrays.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchup.records.encoders import Record, check_encoder, encode_records
from batchup.sources.base import RandomAccessDataSource

__all__ = ["InventorySource", "inventory_column"]


class InventorySource(RandomAccessDataSource):
    """Draw batches whose samples are encoded from the records of an inventory.

    Parameters
    ----------
    inventory : pandas.DataFrame, dict of columns or list of dicts
        One record per sample.
    data_encoder : encoder
        Turns a batch of records into the inputs: a per-record encoder
        (``transform(record)`` or a callable, optional ``finalize_batch``)
        or a per-batch one (``transform_batch(records)``); see
        :mod:`batchup.records.encoders`.
    target_encoder : encoder, optional
        Turns the records into the targets. Without it batches are ``(x,)``.
    indices, repeats, sampler, include_indices
        As for :class:`~batchup.sources.ArrayDataSource`.
    fit : bool, default True
        Keyword-only. Call ``fit(inventory)`` on each encoder that has it,
        once, here.

    Raises
    ------
    TypeError
        If an encoder follows neither protocol, or the inventory is of an
        unsupported kind.

    Notes
    -----
    Records are :class:`~batchup.records.encoders.Record` dicts (they know
    their row as ``record.index``); values are plain Python objects. An
    error raised while encoding names the record's row. Encoders run in
    whatever thread or process makes the batch, so with a worker pool they
    must be thread-safe or picklable.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.records import LabelTargetEncoder
    >>> inventory = {"text": ["a", "bb", "ccc", "dddd"], "label": ["x", "y", "x", "y"]}
    >>> ds = InventorySource(inventory, lambda r: len(r["text"]), LabelTargetEncoder())
    >>> for x, y in ds.batch_iterator(batch_size=3):
    ...     print(x.tolist(), y.tolist())
    [1, 2, 3] [0, 1, 0]
    [4] [1]
    """

    def __init__(
        self,
        inventory: Any,
        data_encoder: Any,
        target_encoder: Any = None,
        indices: Any = None,
        repeats: int = 1,
        sampler: Any = None,
        include_indices: bool = False,
        *,
        fit: bool = True,
    ) -> None:
        self.data_encoder = check_encoder(data_encoder, "data_encoder")
        self.target_encoder = None if target_encoder is None else check_encoder(target_encoder, "target_encoder")
        self._columns, self._rows = _normalise(inventory)
        length = len(self._rows) if self._rows is not None else len(next(iter(self._columns.values()), []))
        super().__init__(length, indices=indices, repeats=repeats, sampler=sampler, include_indices=include_indices)
        if fit:
            for enc in (self.data_encoder, self.target_encoder):
                fit_fn = getattr(enc, "fit", None)
                if callable(fit_fn):
                    fit_fn(inventory)

    @property
    def fields(self) -> list:
        """The field names of the records (the inventory's columns)."""
        if self._rows is not None:
            return sorted({k for r in self._rows for k in r}, key=str)
        return list(self._columns)

    def records(self, indices: Any) -> list:
        """Return the records at absolute ``indices`` as :class:`Record` dicts.

        Parameters
        ----------
        indices : array-like of int
            Inventory rows, in the order wanted.

        Returns
        -------
        list of Record
            One record per index, each knowing its row (``.index``).
        """
        idx = np.asarray(indices, dtype=np.intp).reshape(-1)
        if self._rows is not None:
            return [Record(self._rows[i], index=i) for i in idx.tolist()]
        names = list(self._columns)
        cols = [np.take(c, idx, axis=0).tolist() for c in self._columns.values()]
        return [Record(zip(names, vals), index=i) for i, vals in zip(idx.tolist(), zip(*cols))]

    def samples_by_indices_nomapping(self, indices: Any) -> tuple:
        """Return ``(x, y)`` (or ``(x,)``) for the records at absolute ``indices``.

        Parameters
        ----------
        indices : array-like of int or slice
            Inventory rows, in the order wanted.

        Returns
        -------
        tuple of numpy.ndarray
            The data encoder's batch, then the target encoder's (if any); the
            indices first with ``include_indices``.
        """
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(self._length))
        else:
            indices = np.asarray(indices)
        records = self.records(indices)
        batch: tuple = (encode_records(self.data_encoder, records, "data_encoder"),)
        if self.target_encoder is not None:
            batch += (encode_records(self.target_encoder, records, "target_encoder"),)
        if self.include_indices:
            batch = (indices,) + batch
        return batch

    def __repr__(self) -> str:
        return f"InventorySource(<{self._length} records>, sampler={self.sampler!r})"


def _normalise(inventory: Any) -> tuple:
    """Return ``(columns, rows)``: a dict of column arrays, or a list of row dicts."""
    if _is_pandas_frame(inventory):
        return {c: inventory[c].to_numpy() for c in inventory.columns}, None
    if isinstance(inventory, Mapping):
        cols = {c: np.asarray(v, dtype=object) for c, v in inventory.items()}
        lengths = {c: len(v) for c, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"all inventory columns must have the same length, got {lengths}")
        return cols, None
    if isinstance(inventory, (list, tuple)) and all(isinstance(r, Mapping) for r in inventory):
        return None, [dict(r) for r in inventory]
    raise TypeError(
        "inventory must be a pandas DataFrame, a dict of columns or a list of dicts, "
        f"got {type(inventory).__name__}"
    )


def inventory_column(inventory: Any, name: str) -> list:
    """Return the values of field ``name`` over the whole inventory, as a list.

    Parameters
    ----------
    inventory : pandas.DataFrame, dict of columns or list of dicts
        The inventory, as given to :class:`InventorySource`.
    name : str
        The column (field) to read.

    Returns
    -------
    list
        The field's value for every row, in row order.

    Raises
    ------
    KeyError
        If the inventory has no such column (the message lists those it has).
    """
    if _is_pandas_frame(inventory) or isinstance(inventory, Mapping):
        if name not in inventory:
            have = list(inventory.columns) if _is_pandas_frame(inventory) else list(inventory)
            raise KeyError(f"the inventory has no column {name!r}; its columns are {have}")
        col = inventory[name]
        return col.tolist() if hasattr(col, "tolist") else list(col)
    if isinstance(inventory, (list, tuple)):
        out = []
        for i, r in enumerate(inventory):
            if name not in r:
                raise KeyError(f"the record at row {i} has no field {name!r}; its fields are {list(r)}")
            out.append(r[name])
        return out
    raise TypeError(f"cannot read column {name!r} from an inventory of type {type(inventory).__name__}")


def _is_pandas_frame(data: Any) -> bool:
    cls = type(data)
    return cls.__module__.partition(".")[0] == "pandas" and hasattr(data, "columns")
