"""FileDataEncoder: load each record's data from a file; you write "file handle -> array".

The encoder finds the file of a record (``data_dir / id_mapper(record[column])``),
opens it, and hands the open file to your reader. File handling, the
error for a missing file (naming the file and the record) and, optionally,
reading a batch's files in parallel threads are taken care of.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Callable, Sequence

from batchup._checks import positive_int
from batchup.records.encoders import DataEncoder, record_value

__all__ = ["FileDataEncoder"]


class FileDataEncoder(DataEncoder):
    """Per-record encoder that reads a file per record with ``reader(file_handle)``.

    Either pass ``reader`` or subclass and override :meth:`read`.

    Parameters
    ----------
    reader : callable, optional
        ``reader(fh) -> array`` where ``fh`` is the open file.
    data_dir : str or os.PathLike, optional
        The folder the file names are relative to.
    column : str, default "file_name"
        Keyword-only. The record field holding the file's id.
    id_mapper : callable, optional
        Keyword-only. Maps the id to a file name (e.g. ``lambda i: i + ".txt"``).
    mode : {"rb", "r"}, default "rb"
        Keyword-only. Open files in binary or text mode.
    max_workers : int, optional
        Keyword-only. Read the files of a batch with this many threads;
        ``None`` reads them one after the other (same results).

    Raises
    ------
    FileNotFoundError
        When a record's file is missing; the message names the file and the
        record (with its row).

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name, text in [("a", "1 2"), ("b", "3 4")]:
    ...     with open(os.path.join(folder, name + ".txt"), "w") as f:
    ...         _ = f.write(text)
    >>> import numpy as np
    >>> enc = FileDataEncoder(lambda fh: np.array(fh.read().split(), dtype=int), folder,
    ...                       id_mapper=lambda i: i + ".txt", mode="r")
    >>> enc.transform_batch([{"file_name": "b"}, {"file_name": "a"}]).tolist()
    [[3, 4], [1, 2]]
    """

    def __init__(
        self,
        reader: Callable[[IO], Any] | None = None,
        data_dir: Any = None,
        *,
        column: str = "file_name",
        id_mapper: Callable[[Any], Any] | None = None,
        mode: str = "rb",
        max_workers: int | None = None,
    ) -> None:
        if reader is not None and not callable(reader):
            raise TypeError(f"reader must be callable (file handle -> array), got {reader!r}")
        if mode not in ("rb", "r"):
            raise ValueError(f"mode must be 'rb' or 'r', got {mode!r}")
        if id_mapper is not None and not callable(id_mapper):
            raise TypeError(f"id_mapper must be callable, got {id_mapper!r}")
        self.reader = reader
        self.data_dir = None if data_dir is None else os.fspath(data_dir)
        self.column = column
        self.id_mapper = id_mapper
        self.mode = mode
        self.max_workers = None if max_workers is None else positive_int("max_workers", max_workers)

    def read(self, fh: IO) -> Any:
        """Return the sample read from the open file ``fh`` (override, or pass ``reader``).

        Parameters
        ----------
        fh : file object
            The record's file, open in ``mode`` (binary by default).

        Returns
        -------
        object
            The sample, usually an array; ``reader(fh)`` by default.

        Raises
        ------
        NotImplementedError
            If no ``reader`` was given and the subclass does not override this.
        """
        if self.reader is None:
            raise NotImplementedError(
                f"{type(self).__name__} needs a reader: pass reader=<file handle -> array> or override read(fh)"
            )
        return self.reader(fh)

    def path_for(self, record: Any) -> str:
        """Return the path of ``record``'s file.

        Parameters
        ----------
        record : Record or mapping
            The record; its ``column`` field holds the file's id.

        Returns
        -------
        str
            ``id_mapper(id)`` (or the id itself), joined to ``data_dir`` if set.

        Raises
        ------
        KeyError
            If the record has no ``column`` field.
        ValueError
            If that field is empty.
        """
        rid = record_value(record, self.column, type(self).__name__)
        name = self.id_mapper(rid) if self.id_mapper is not None else rid
        name = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
        return name if self.data_dir is None else os.path.join(self.data_dir, name)

    def transform(self, record: Any) -> Any:
        path = self.path_for(record)
        try:
            fh = open(path, self.mode)  # noqa: SIM115 - closed below
        except FileNotFoundError as err:
            raise FileNotFoundError(
                err.errno,
                f"no file for the record at row {getattr(record, 'index', None)} {dict(record)!r}: {path!r}",
                path,
            ) from err
        with fh:
            try:
                return self.read(fh)
            except Exception as err:
                note = getattr(err, "add_note", None)
                if note is not None:
                    note(f"while reading {path!r} for the record at row {getattr(record, 'index', None)}")
                raise

    def transform_batch(self, records: Sequence[Any]) -> Any:
        """Read every record's file (in threads with ``max_workers``) and stack the samples.

        Parameters
        ----------
        records : sequence of Record
            The batch's records.

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            What :meth:`finalize_batch` makes of the samples, one row per record
            in the order of ``records``.
        """
        if self.max_workers is None or self.max_workers == 1 or len(records) <= 1:
            items = [self.transform(r) for r in records]
        else:
            with ThreadPoolExecutor(min(self.max_workers, len(records)), thread_name_prefix="batchup-files") as ex:
                items = list(ex.map(self.transform, records))
        return self.finalize_batch(items)
