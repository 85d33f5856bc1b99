"""Target encoders: a label field of each record as an int, a one-hot row, or 0/1.

Each is a per-batch encoder (one dictionary lookup per label, no per-record calls)
that learns its classes in ``fit(inventory)`` unless they are given. The
classes are sorted, so the codes do not depend on the inventory's row order.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from batchup.records.encoders import BatchDataEncoder, record_value
from batchup.records.inventory import inventory_column

__all__ = ["BinaryTargetEncoder", "LabelTargetEncoder", "OneHotTargetEncoder"]


class LabelTargetEncoder(BatchDataEncoder):
    """Encode the label in field ``column`` as its position in the sorted classes.

    Parameters
    ----------
    column : str, default "label"
        The record field holding the label.
    classes : sequence, optional
        The known labels. Without them ``fit(inventory)`` takes the sorted
        distinct labels of the inventory.

    Raises
    ------
    ValueError
        At ``transform_batch``: a label outside the classes, a missing label,
        or the encoder was never fitted.

    Examples
    --------
    >>> enc = LabelTargetEncoder().fit({"label": ["cat", "dog", "cat"]})
    >>> enc.classes_.tolist(), enc.n_classes
    (['cat', 'dog'], 2)
    >>> enc.transform_batch([{"label": "dog"}, {"label": "cat"}]).tolist()
    [1, 0]
    """

    def __init__(self, column: str = "label", classes: Sequence[Any] | None = None) -> None:
        self.column = column
        self.classes_ = None if classes is None else _classes(classes, "classes")
        self._lookup: dict | None = None

    @property
    def n_classes(self) -> int:
        """The number of classes (after ``fit`` or given)."""
        return len(self._require_classes())

    def fit(self, inventory: Any) -> LabelTargetEncoder:
        """Learn the classes from the inventory's ``column`` unless they were given.

        Parameters
        ----------
        inventory : pandas.DataFrame, dict of columns or list of dicts
            The inventory as given to the source.

        Returns
        -------
        LabelTargetEncoder
            ``self``, with ``classes_`` set to the sorted distinct labels.

        Raises
        ------
        KeyError
            If the inventory has no ``column``.
        ValueError
            If the column is empty or has missing values.
        """
        if self.classes_ is None:
            values = inventory_column(inventory, self.column)
            self.classes_ = _classes(values, f"the inventory column {self.column!r}")
            self._lookup = None
        return self

    def _require_classes(self) -> np.ndarray:
        if self.classes_ is None:
            raise ValueError(f"{type(self).__name__} has no classes: call fit(inventory) or pass classes=")
        return self.classes_

    def codes(self, records: Sequence[Any]) -> np.ndarray:
        """Return the int64 class position of every record's label.

        Parameters
        ----------
        records : sequence of Record
            The batch's records.

        Returns
        -------
        numpy.ndarray
            int64 codes, ``0 <= code < n_classes``, one per record.

        Raises
        ------
        ValueError
            For a label outside the classes or a missing label (naming the
            row), or if the encoder was never fitted.
        """
        classes = self._require_classes()
        lookup = self._lookup
        if lookup is None or len(lookup) != len(classes):
            lookup = self._lookup = {c: i for i, c in enumerate(classes.tolist())}
        where = f"{type(self).__name__}({self.column!r})"
        out = np.empty(len(records), dtype=np.int64)
        for i, r in enumerate(records):
            label = record_value(r, self.column, where)
            try:
                out[i] = lookup[label]
            except (KeyError, TypeError):
                row = getattr(r, "index", None)
                raise ValueError(
                    f"{where}: the record at row {row} has the label {label!r}, which is not one of the "
                    f"{len(classes)} known classes {classes.tolist()[:20]}"
                ) from None
        return out

    def transform_batch(self, records: Sequence[Any]) -> np.ndarray:
        """Return the int64 class position of every record's label.

        Parameters
        ----------
        records : sequence of Record
            The batch's records.

        Returns
        -------
        numpy.ndarray
            int64 codes, one per record (see :meth:`codes`).
        """
        return self.codes(records)


class OneHotTargetEncoder(LabelTargetEncoder):
    """Encode the label in field ``column`` as a one-hot row of ``n_classes`` values.

    Parameters
    ----------
    column, classes
        As for :class:`LabelTargetEncoder`.
    dtype : dtype, default float32
        The dtype of the rows.

    Examples
    --------
    >>> enc = OneHotTargetEncoder(classes=["a", "b", "c"])
    >>> enc.transform_batch([{"label": "c"}, {"label": "a"}]).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    def __init__(self, column: str = "label", classes: Sequence[Any] | None = None, dtype: Any = np.float32) -> None:
        super().__init__(column, classes)
        self.dtype = np.dtype(dtype)

    def transform_batch(self, records: Sequence[Any]) -> np.ndarray:
        """Return a one-hot row for every record's label.

        Parameters
        ----------
        records : sequence of Record
            The batch's records.

        Returns
        -------
        numpy.ndarray
            Shape ``(len(records), n_classes)`` of ``dtype``, with a 1 at the
            label's class position.
        """
        codes = self.codes(records)
        out = np.zeros((len(codes), self.n_classes), dtype=self.dtype)
        out[np.arange(len(codes)), codes] = 1
        return out


class BinaryTargetEncoder(LabelTargetEncoder):
    """Encode a two-class label as 0 or 1 (the second sorted class is 1).

    Parameters
    ----------
    column, classes
        As for :class:`LabelTargetEncoder`; there must be exactly two classes.
    dtype : dtype, default float32
        The dtype of the targets (suits a sigmoid output and binary
        cross-entropy).

    Raises
    ------
    ValueError
        If the classes are not exactly two.

    Examples
    --------
    >>> enc = BinaryTargetEncoder().fit({"label": ["spam", "ham", "spam"]})
    >>> enc.transform_batch([{"label": "spam"}, {"label": "ham"}]).tolist()
    [1.0, 0.0]
    """

    def __init__(self, column: str = "label", classes: Sequence[Any] | None = None, dtype: Any = np.float32) -> None:
        super().__init__(column, classes)
        self.dtype = np.dtype(dtype)
        if self.classes_ is not None:
            self._check_two()

    def fit(self, inventory: Any) -> BinaryTargetEncoder:
        """Learn the two classes from the inventory's ``column`` unless they were given.

        Parameters
        ----------
        inventory : pandas.DataFrame, dict of columns or list of dicts
            The inventory as given to the source.

        Returns
        -------
        BinaryTargetEncoder
            ``self``.

        Raises
        ------
        ValueError
            If there are not exactly two classes.
        """
        super().fit(inventory)
        self._check_two()
        return self

    def _check_two(self) -> None:
        classes = self._require_classes()
        if len(classes) != 2:
            raise ValueError(
                f"binary targets need exactly 2 classes in column {self.column!r}, got "
                f"{len(classes)}: {classes.tolist()[:20]}"
            )

    def transform_batch(self, records: Sequence[Any]) -> np.ndarray:
        """Return 0 or 1 for every record's label (1 for the second sorted class).

        Parameters
        ----------
        records : sequence of Record
            The batch's records.

        Returns
        -------
        numpy.ndarray
            Shape ``(len(records),)`` of ``dtype``.
        """
        return self.codes(records).astype(self.dtype)


def _classes(values: Any, what: str) -> np.ndarray:
    values = list(values)
    bad = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and v != v)]
    if bad:
        raise ValueError(f"{what} has missing values (rows {bad[:10]})")
    if not values:
        raise ValueError(f"{what} is empty: there are no classes to learn")
    try:
        return np.unique(np.asarray(values))
    except TypeError as err:
        kinds = sorted({type(v).__name__ for v in values})
        raise TypeError(f"{what} mixes label types that cannot be sorted: {kinds}") from err
