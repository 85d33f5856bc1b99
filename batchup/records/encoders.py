"""The two record-encoder protocols and the function that applies either to a batch.

A record is one row of an inventory, a ``dict`` of field name to value
(:class:`Record`, which also knows its row). An encoder turns the records
of a batch into an array, in one of two ways:

per record
    ``transform(record)`` (or simply ``__call__(record)``) returns one
    sample; ``finalize_batch(items)``, if present, combines the list of
    samples into the batch (by default they are stacked with ``np.stack``).
per batch
    ``transform_batch(records)`` returns the whole batch at once; use it
    when the work vectorises (label lookups) or wants to fetch in parallel.

Both may have ``fit(inventory)``, which the data source calls once before
drawing batches. :class:`DataEncoder` and :class:`BatchDataEncoder` are
optional base classes; any object with the methods works.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = [
    "BatchDataEncoder",
    "BatchEncoderProtocol",
    "DataEncoder",
    "Record",
    "RecordEncoderProtocol",
    "check_encoder",
    "encode_records",
    "missing_value",
    "record_value",
]


class Record(dict):
    """A record: a dict of fields that remembers its inventory row (``index``).

    Reading a field it does not have raises a ``KeyError`` that names the
    row and lists the fields it has.

    Parameters
    ----------
    fields : mapping or iterable of (key, value) pairs, optional
        The fields, as for ``dict(fields)``.
    index : int, optional
        The record's row in its inventory (kept as ``.index``).

    Examples
    --------
    >>> r = Record({"file_name": "a.txt", "label": "cat"}, index=3)
    >>> r["label"], r.index
    ('cat', 3)
    >>> r["size"]
    Traceback (most recent call last):
    ...
    KeyError: "the record at row 3 has no field 'size'; its fields are ['file_name', 'label']"
    """

    __slots__ = ("index",)

    def __init__(self, fields: Any = (), index: int | None = None) -> None:
        super().__init__(fields)
        self.index = index

    def __missing__(self, key: Any) -> Any:
        raise KeyError(f"the record at row {self.index} has no field {key!r}; its fields are {list(self)}")

    def __reduce__(self) -> Any:
        return (Record, (dict(self), self.index))


def missing_value(value: Any) -> bool:
    """Return True for ``None`` and float NaN (how pandas marks an empty cell).

    Parameters
    ----------
    value : object
        A field's value.

    Returns
    -------
    bool
        Whether the value counts as missing.
    """
    return value is None or (isinstance(value, float) and value != value)


def record_value(record: Any, field: str, where: str = "encoder") -> Any:
    """Return ``record[field]``, raising a clear error if it is absent or empty.

    Parameters
    ----------
    record : Record or mapping
        The record to read.
    field : str
        The field's name.
    where : str, default "encoder"
        Who reads it, for the message.

    Returns
    -------
    object
        The field's value (never ``None`` or NaN).

    Raises
    ------
    KeyError
        If the record has no such field.
    ValueError
        If the value is missing (``None`` or NaN).
    """
    value = record[field]
    if missing_value(value):
        row = getattr(record, "index", None)
        raise ValueError(f"{where}: the record at row {row} has a missing value in field {field!r}: {dict(record)!r}")
    return value


@runtime_checkable
class RecordEncoderProtocol(Protocol):
    """Per-record encoder: ``transform(record)`` (``fit`` and ``finalize_batch`` optional)."""

    def transform(self, record: Any) -> Any:
        """Return the sample (an array or a scalar) for one record.

        Parameters
        ----------
        record : Record
            One row of the inventory.

        Returns
        -------
        object
            The sample; the samples of a batch are stacked (or passed to
            ``finalize_batch``).
        """
        ...


@runtime_checkable
class BatchEncoderProtocol(Protocol):
    """Per-batch encoder: ``transform_batch(records)`` (``fit`` optional)."""

    def transform_batch(self, records: Sequence[Any]) -> Any:
        """Return the encoded batch for a list of records.

        Parameters
        ----------
        records : sequence of Record
            The records of one batch, in batch order.

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            One row per record (a tuple for several outputs).
        """
        ...


class DataEncoder:
    """Optional base class of per-record encoders: write :meth:`transform`.

    Examples
    --------
    >>> class Length(DataEncoder):
    ...     def transform(self, record):
    ...         return len(record["text"])
    >>> encode_records(Length(), [{"text": "ab"}, {"text": "abcd"}]).tolist()
    [2, 4]
    """

    def fit(self, inventory: Any) -> DataEncoder:
        """Learn from the whole inventory (nothing by default); return ``self``.

        Parameters
        ----------
        inventory : pandas.DataFrame, dict of columns or list of dicts
            The inventory as it was given to the source (every record it will
            draw from); called once, before the first batch.

        Returns
        -------
        DataEncoder
            ``self``, so that ``Encoder().fit(inventory)`` can be passed on.
        """
        return self

    def transform(self, record: Any) -> Any:
        """Return the sample for one record.

        Parameters
        ----------
        record : Record
            One row of the inventory.

        Returns
        -------
        object
            The sample (an array or a scalar); the samples of a batch are
            combined by :meth:`finalize_batch`.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement transform(record)")

    def __call__(self, record: Any) -> Any:
        """Return ``self.transform(record)``, so an encoder can be used as a function.

        Parameters
        ----------
        record : Record
            One row of the inventory.

        Returns
        -------
        object
            The sample for ``record``.
        """
        return self.transform(record)

    def finalize_batch(self, items: list) -> Any:
        """Combine the samples of a batch (stacked along a new first axis by default).

        Parameters
        ----------
        items : list
            What :meth:`transform` returned for each record of the batch.

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            One row per record (a tuple for several outputs).

        Raises
        ------
        ValueError
            If the samples have different shapes (naming them).
        """
        return _stack(items)


class BatchDataEncoder:
    """Optional base class of per-batch encoders: write :meth:`transform_batch`."""

    def fit(self, inventory: Any) -> BatchDataEncoder:
        """Learn from the whole inventory (nothing by default); return ``self``.

        Parameters
        ----------
        inventory : pandas.DataFrame, dict of columns or list of dicts
            The inventory as it was given to the source (every record it will
            draw from); called once, before the first batch.

        Returns
        -------
        BatchDataEncoder
            ``self``, so that ``Encoder().fit(inventory)`` can be passed on.
        """
        return self

    def transform_batch(self, records: Sequence[Any]) -> Any:
        """Return the encoded batch for a list of records.

        Parameters
        ----------
        records : sequence of Record
            The records of one batch, in batch order.

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            One row per record (a tuple for several outputs).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement transform_batch(records)")


def check_encoder(encoder: Any, name: str) -> Any:
    """Return ``encoder`` if it follows one of the protocols, else raise TypeError.

    Parameters
    ----------
    encoder : object
        An object with ``transform_batch(records)`` or ``transform(record)``,
        or a plain callable of one record.
    name : str
        The argument's name, for the message.

    Returns
    -------
    object
        ``encoder`` itself.

    Raises
    ------
    TypeError
        If ``encoder`` has neither method and is not callable.
    """
    if callable(getattr(encoder, "transform_batch", None)) or callable(getattr(encoder, "transform", None)):
        return encoder
    if callable(encoder):
        return encoder
    raise TypeError(
        f"{name} must have transform_batch(records), transform(record) or be callable, got {encoder!r}"
    )


def encode_records(encoder: Any, records: Sequence[Any], where: str = "encoder") -> Any:
    """Encode a batch of records with a per-record or per-batch encoder.

    ``transform_batch`` is preferred when the encoder has it; otherwise
    ``transform`` (or the encoder itself, if it is a plain callable) is
    called per record and the samples are combined by ``finalize_batch`` or
    stacked. An error raised for a record gets a note naming its row.

    Parameters
    ----------
    encoder : object
        A per-record or per-batch encoder (see :func:`check_encoder`).
    records : sequence of Record
        The records of one batch.
    where : str, default "encoder"
        Which encoder this is, for the messages.

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        An array, or a tuple of arrays when the encoder returns a tuple
        (several outputs), each with one row per record.

    Raises
    ------
    ValueError
        If the result does not have one row per record.
    """
    if callable(getattr(encoder, "transform_batch", None)):
        out = encoder.transform_batch(records)
    else:
        fn = getattr(encoder, "transform", None)
        fn = fn if callable(fn) else encoder
        items = []
        for record in records:
            try:
                items.append(fn(record))
            except Exception as err:
                _note(err, f"while the {where} encoded the record at row {getattr(record, 'index', None)}")
                raise
        finalize = getattr(encoder, "finalize_batch", None)
        out = finalize(items) if callable(finalize) else _stack(items)
    if isinstance(out, tuple):
        return tuple(_checked(o, len(records), where) for o in out)
    return _checked(out, len(records), where)


def _checked(out: Any, n: int, where: str) -> np.ndarray:
    if isinstance(out, list):
        out = _stack(out)
    out = np.asarray(out)
    if out.ndim == 0 or len(out) != n:
        got = "a scalar" if out.ndim == 0 else f"{len(out)} rows"
        raise ValueError(f"the {where} returned {got} for a batch of {n} records; it must return one row per record")
    return out


def _stack(items: list) -> np.ndarray:
    if not items:
        return np.zeros((0,))
    try:
        return np.stack([np.asarray(i) for i in items])
    except ValueError as err:
        shapes = sorted({np.shape(i) for i in items}, key=str)
        raise ValueError(f"cannot stack the encoded records: they have different shapes {shapes}") from err


def _note(err: BaseException, text: str) -> None:
    add = getattr(err, "add_note", None)  # Python 3.11+
    if add is not None:
        add(text)
