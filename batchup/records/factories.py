"""Factories: an :class:`InventorySource` from an inventory CSV, for files or for URLs.

The common case of record inventories (numblr's datagenerator): a CSV lists
one sample per row, an id (file name or URL path) and a label. :func:`files_source` and :func:`urls_source`
read it, check the id and target columns, and pair a
:class:`~batchup.records.FileDataEncoder` / :class:`~batchup.records.UrlDataEncoder`
with a label, one-hot or binary target encoder.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Callable

from batchup._optional import import_optional
from batchup.records.encoders import check_encoder, missing_value
from batchup.records.files import FileDataEncoder
from batchup.records.inventory import InventorySource
from batchup.records.targets import BinaryTargetEncoder, LabelTargetEncoder, OneHotTargetEncoder
from batchup.records.urls import UrlDataEncoder

__all__ = ["files_source", "read_inventory", "urls_source"]

_TARGETS = {"label": LabelTargetEncoder, "onehot": OneHotTargetEncoder, "binary": BinaryTargetEncoder}


def read_inventory(inventory: Any, *, id_column: str, target_column: str | None = None) -> Any:
    """Return the inventory as a DataFrame, checking its id and target columns.

    Parameters
    ----------
    inventory : str, os.PathLike or pandas.DataFrame
        A CSV file (read with ``pandas.read_csv``, the id column as text) or
        a DataFrame.
    id_column : str
        Keyword-only. The column of file names / URL ids.
    target_column : str, optional
        Keyword-only. The column of labels, if any.

    Returns
    -------
    pandas.DataFrame
        The inventory (the DataFrame itself when one was passed).

    Raises
    ------
    ValueError
        If a column is absent (the message lists those present) or has empty
        cells (the message names the rows).
    ImportError
        If pandas is not installed (``pip install batchup[pandas]``).
    """
    pd = import_optional("pandas", "pandas", "reading an inventory")
    if isinstance(inventory, (str, os.PathLike)):
        frame = pd.read_csv(inventory, dtype={id_column: str})
        where = f"the inventory {os.fspath(inventory)!r}"
    elif isinstance(inventory, pd.DataFrame):
        frame = inventory
        where = "the inventory"
    else:
        raise TypeError(f"inventory must be a CSV path or a pandas DataFrame, got {type(inventory).__name__}")
    for role, col in (("id_column", id_column), ("target_column", target_column)):
        if col is None:
            continue
        if col not in frame.columns:
            raise ValueError(f"{where} has no {role} {col!r}; its columns are {list(frame.columns)}")
        empty = [i for i, v in enumerate(frame[col].tolist()) if missing_value(v)]
        if empty:
            raise ValueError(f"{where}: the {role} {col!r} is empty in the rows {empty[:10]}")
    return frame


def _target(target_encoder: Any, target_column: str | None, binary: bool) -> Any:
    if binary:
        if target_encoder not in (None, "binary"):
            raise ValueError("binary=True chooses the target encoder; do not pass target_encoder as well")
        target_encoder = "binary"
    if target_column is None:
        if target_encoder is not None:
            raise ValueError("a target encoder needs a target_column")
        return None
    if target_encoder is None:
        target_encoder = "label"
    if isinstance(target_encoder, str):
        if target_encoder not in _TARGETS:
            raise ValueError(f"target_encoder must be one of {sorted(_TARGETS)} or an encoder, got {target_encoder!r}")
        return _TARGETS[target_encoder](target_column)
    return check_encoder(target_encoder, "target_encoder")


def _data_encoder(reader: Any, cls: type[FileDataEncoder] | type[UrlDataEncoder], settings: dict) -> Any:
    # Settings left as None keep the encoder's own (or the class default).
    given = {k: v for k, v in settings.items() if v is not None}
    if isinstance(reader, cls):
        fresh = cls(reader.reader, **given)  # validates the settings
        enc = copy.copy(reader)
        for key in given:
            setattr(enc, key, getattr(fresh, key))
        return enc
    if not callable(reader):
        raise TypeError(f"reader must be a {cls.__name__} or a callable (file handle -> array), got {reader!r}")
    return cls(reader, **given)


def files_source(
    inventory: Any,
    data_dir: Any,
    reader: Any,
    target_encoder: Any = None,
    *,
    id_mapper: Callable[[Any], Any] | None = None,
    id_column: str = "file_name",
    target_column: str | None = "label",
    binary: bool = False,
    mode: str | None = None,
    max_workers: int | None = None,
    **source_kwargs: Any,
) -> InventorySource:
    """Return a source that loads each inventory row's file and encodes its label.

    Parameters
    ----------
    inventory : str, os.PathLike or pandas.DataFrame
        The inventory CSV (or a DataFrame already read).
    data_dir : str or os.PathLike
        The folder of the data files.
    reader : callable or FileDataEncoder
        ``reader(fh) -> array`` for one open file, or a
        :class:`~batchup.records.FileDataEncoder` (subclass), which is
        copied: ``data_dir`` and ``id_column`` replace its folder and
        column; ``id_mapper``, ``mode`` and ``max_workers`` replace its own
        unless they are left as ``None``.
    target_encoder : {"label", "onehot", "binary"} or encoder, optional
        How to encode ``target_column``; default ``"label"`` (int codes).
    id_mapper : callable, optional
        Keyword-only. Maps an id to a file name, e.g. ``lambda i: i + ".png"``.
    id_column : str, default "file_name"
        Keyword-only. The column of file ids.
    target_column : str or None, default "label"
        Keyword-only. The column of labels; ``None`` for batches ``(x,)``.
    binary : bool, default False
        Keyword-only. Two-class targets as 0/1 floats (same as
        ``target_encoder="binary"``).
    mode : {"rb", "r"}, optional
        Keyword-only. Open files in binary (the default) or text mode.
    max_workers : int, optional
        Keyword-only. Read a batch's files with this many threads (the
        default reads them one after the other).
    **source_kwargs
        ``indices``, ``repeats``, ``sampler``, ``include_indices``, ``fit``
        for :class:`~batchup.records.InventorySource`.

    Returns
    -------
    InventorySource
        Batches ``(x, y)``, or ``(x,)`` without a target column: ``x``
        stacks what ``reader`` returned for each row's file, ``y`` the
        encoded labels.

    Raises
    ------
    ValueError
        If the id or target column is absent or has empty cells, or for
        conflicting target options (``binary=True`` with another encoder, an
        encoder without a target column).
    TypeError
        If ``reader`` is neither callable nor a ``FileDataEncoder``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(4):
    ...     np.save(os.path.join(folder, f"s{i}.npy"), np.full(2, i))
    >>> with open(os.path.join(folder, "inventory.csv"), "w") as f:
    ...     _ = f.write("file_name,label\\ns0,cat\\ns1,dog\\ns2,cat\\ns3,dog\\n")
    >>> ds = files_source(os.path.join(folder, "inventory.csv"), folder, np.load,
    ...                   id_mapper=lambda i: i + ".npy", binary=True)
    >>> x, y = next(iter(ds.batch_iterator(3)))
    >>> x.tolist(), y.tolist()
    ([[0, 0], [1, 1], [2, 2]], [0.0, 1.0, 0.0])
    """
    frame = read_inventory(inventory, id_column=id_column, target_column=target_column)
    settings = {"data_dir": data_dir, "column": id_column, "id_mapper": id_mapper, "mode": mode, "max_workers": max_workers}
    data = _data_encoder(reader, FileDataEncoder, settings)
    return InventorySource(frame, data, _target(target_encoder, target_column, binary), **source_kwargs)


def urls_source(
    inventory: Any,
    base_url: str | None,
    reader: Any,
    target_encoder: Any = None,
    *,
    id_mapper: Callable[[Any], Any] | None = None,
    id_column: str = "file_name",
    target_column: str | None = "label",
    binary: bool = False,
    timeout: float | None = None,
    retries: int | None = None,
    max_workers: int | None = None,
    **source_kwargs: Any,
) -> InventorySource:
    """Return a source that fetches each inventory row's URL and encodes its label.

    The counterpart of :func:`files_source` for data served over HTTP(S).

    Parameters
    ----------
    inventory : str, os.PathLike or pandas.DataFrame
        The inventory CSV (or a DataFrame already read).
    base_url : str or None
        Joined in front of each mapped id (end it with ``/``); ``None`` if
        the ids are full URLs.
    reader : callable or UrlDataEncoder
        ``reader(fh) -> array`` for one response body (a binary file-like
        object), or a :class:`~batchup.records.UrlDataEncoder` (subclass),
        which is copied: ``base_url`` and ``id_column`` replace its own;
        ``id_mapper``, ``timeout``, ``retries`` and ``max_workers`` replace
        its own unless they are left as ``None``.
    target_encoder : {"label", "onehot", "binary"} or encoder, optional
        How to encode ``target_column``; default ``"label"`` (int codes).
    id_mapper : callable, optional
        Keyword-only. Maps an id to a URL path, e.g. ``lambda i: i + ".png"``.
    id_column : str, default "file_name"
        Keyword-only. The column of URL ids.
    target_column : str or None, default "label"
        Keyword-only. The column of labels; ``None`` for batches ``(x,)``.
    binary : bool, default False
        Keyword-only. Two-class targets as 0/1 floats (same as
        ``target_encoder="binary"``).
    timeout : float, optional
        Keyword-only. Seconds per attempt (the encoder's default is 10).
    retries : int, optional
        Keyword-only. Further attempts after a failed one (the encoder's
        default is 2); see :func:`~batchup.records.fetch_url`.
    max_workers : int, optional
        Keyword-only. Fetch a batch's URLs with this many threads.
    **source_kwargs
        ``indices``, ``repeats``, ``sampler``, ``include_indices``, ``fit``
        for :class:`~batchup.records.InventorySource`.

    Returns
    -------
    InventorySource
        Batches ``(x, y)``, or ``(x,)`` without a target column.

    Raises
    ------
    ValueError
        If the id or target column is absent or has empty cells, or for
        conflicting target options.
    TypeError
        If ``reader`` is neither callable nor a ``UrlDataEncoder``.
    """
    frame = read_inventory(inventory, id_column=id_column, target_column=target_column)
    settings = {
        "base_url": base_url, "column": id_column, "id_mapper": id_mapper,
        "timeout": timeout, "retries": retries, "max_workers": max_workers,
    }
    data = _data_encoder(reader, UrlDataEncoder, settings)
    return InventorySource(frame, data, _target(target_encoder, target_column, binary), **source_kwargs)
