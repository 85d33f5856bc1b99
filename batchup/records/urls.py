"""UrlDataEncoder: fetch each record's data over HTTP(S); you write "response -> array".

The encoder builds a record's URL (``base_url`` joined with
``id_mapper(record[column])``), fetches it and hands the body, as a
file-like object, to your reader. Requests go through batchup's one HTTP
client (``batchup._http``, shared with the dataset downloads): connections
are kept alive and reused for the next record on the same host, every
connection and read has a timeout, and transient failures (connection
errors, timeouts, truncated bodies, HTTP 408, 429 and 5xx) are retried with
exponential back-off, waiting at least as long as a ``Retry-After`` header
asks. A URL that still fails raises :class:`UrlFetchError` naming the URL,
the record and the attempts.
"""
from __future__ import annotations

import io
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Callable, Sequence

from batchup import _http
from batchup._checks import positive_int
from batchup._errors import DownloadError
from batchup.records.encoders import DataEncoder, record_value

__all__ = ["UrlDataEncoder", "UrlFetchError", "fetch_url"]


class UrlFetchError(DownloadError):
    """A URL could not be fetched (after the allowed retries).

    Parameters
    ----------
    message : str
        What failed, and why.
    url : str
        The URL (also the attribute ``url``).
    status : int, optional
        The last HTTP status, if there was one (also the attribute ``status``).
    """

    def __init__(self, message: str, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status

    def __str__(self) -> str:
        return str(self.args[0])


def fetch_url(url: str, *, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5) -> bytes:
    """Return the body of ``url``, retrying transient failures.

    Parameters
    ----------
    url : str
        An ``http://`` or ``https://`` URL.
    timeout : float, default 10.0
        Seconds for connecting and for each read.
    retries : int, default 2
        Further attempts after the first, for transient failures only
        (connection errors, timeouts, truncated bodies, HTTP 408, 429, 5xx).
    backoff : float, default 0.5
        Seconds to wait before the first retry, doubled for each further one
        (at most 60 s). A ``Retry-After`` header makes the wait longer; one
        asking for more than 60 s ends the retries.

    Returns
    -------
    bytes
        The body.

    Raises
    ------
    ValueError
        If the scheme is not http or https.
    UrlFetchError
        If the URL fails with a non-transient error, or all attempts fail.

    Examples
    --------
    >>> fetch_url("ftp://example.org/a.txt")
    Traceback (most recent call last):
    ...
    ValueError: only http and https URLs can be fetched; the scheme of 'ftp://example.org/a.txt' is 'ftp'
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"only http and https URLs can be fetched; the scheme of {url!r} is {scheme!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    policy = _http.RetryPolicy(tries=retries + 1, backoff=backoff)
    try:
        return _http.retry(lambda attempt: _http.get_bytes(url, timeout=timeout), policy)
    except _http.GaveUp as gave:
        n = gave.attempts
        why = "" if _http.retryable(gave.last) else ", not retried"
        note = f"; {gave.note}" if gave.note else ""
        raise UrlFetchError(f"fetching {url!r} failed after {n} attempt{'s' if n != 1 else ''}{why}{note}: "
                            f"{gave.last}", url, getattr(gave.last, "status", None)) from gave.last


class UrlDataEncoder(DataEncoder):
    """Per-record encoder that fetches a URL per record and reads it with ``reader``.

    Either pass ``reader`` or subclass and override :meth:`read`.

    Parameters
    ----------
    reader : callable, optional
        ``reader(fh) -> array`` where ``fh`` is a binary file-like object
        holding the response body (a text one if ``encoding`` is given).
    base_url : str, optional
        Joined in front of each record's id with ``urllib.parse.urljoin``
        (end it with ``/``); without it the id must be a full URL.
    column : str, default "url"
        Keyword-only. The record field holding the id or URL.
    id_mapper : callable, optional
        Keyword-only. Maps the id to a URL path (e.g. ``lambda i: i + ".png"``).
    encoding : str, optional
        Keyword-only. Decode the body with this text encoding first.
    timeout, retries, backoff
        Keyword-only; see :func:`fetch_url`.
    max_workers : int, optional
        Keyword-only. Fetch a batch's URLs with this many threads.

    Raises
    ------
    UrlFetchError
        When a record's URL fails; the message names the URL and the record.
    """

    def __init__(
        self,
        reader: Callable[[IO], Any] | None = None,
        base_url: str | None = None,
        *,
        column: str = "url",
        id_mapper: Callable[[Any], Any] | None = None,
        encoding: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_workers: int | None = None,
    ) -> None:
        if reader is not None and not callable(reader):
            raise TypeError(f"reader must be callable (file-like -> array), got {reader!r}")
        if id_mapper is not None and not callable(id_mapper):
            raise TypeError(f"id_mapper must be callable, got {id_mapper!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not (isinstance(retries, int) and retries >= 0):
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not (isinstance(backoff, (int, float)) and backoff >= 0):
            raise ValueError(f"backoff must be >= 0 seconds, got {backoff!r}")
        self.reader = reader
        self.base_url = base_url
        self.column = column
        self.id_mapper = id_mapper
        self.encoding = encoding
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_workers = None if max_workers is None else positive_int("max_workers", max_workers)

    def read(self, fh: IO) -> Any:
        """Return the sample read from the response body ``fh`` (override, or pass ``reader``).

        Parameters
        ----------
        fh : file-like
            The body (binary, or text with ``encoding``).

        Returns
        -------
        object
            The sample, typically an array.
        """
        if self.reader is None:
            raise NotImplementedError(
                f"{type(self).__name__} needs a reader: pass reader=<file-like -> array> or override read(fh)"
            )
        return self.reader(fh)

    def url_for(self, record: Any) -> str:
        """Return the URL of ``record``.

        Parameters
        ----------
        record : Record or mapping
            The record; its ``column`` field holds the id.

        Returns
        -------
        str
            ``base_url`` joined with the mapped id.
        """
        rid = record_value(record, self.column, type(self).__name__)
        path = str(self.id_mapper(rid) if self.id_mapper is not None else rid)
        return path if self.base_url is None else urllib.parse.urljoin(self.base_url, path)

    def transform(self, record: Any) -> Any:
        """Fetch ``record``'s URL and return what :meth:`read` makes of the body.

        Parameters
        ----------
        record : Record or mapping
            The record.

        Returns
        -------
        object
            The sample.

        Raises
        ------
        UrlFetchError
            If the URL cannot be fetched; the message names the record.
        """
        url = self.url_for(record)
        try:
            body = fetch_url(url, timeout=self.timeout, retries=self.retries, backoff=self.backoff)
        except UrlFetchError as err:
            raise UrlFetchError(
                f"{err} (for the record at row {getattr(record, 'index', None)} {dict(record)!r})", url, err.status
            ) from err.__cause__
        fh: IO = io.StringIO(body.decode(self.encoding)) if self.encoding else io.BytesIO(body)
        try:
            return self.read(fh)
        except Exception as err:
            note = getattr(err, "add_note", None)
            if note is not None:
                note(f"while reading the body of {url!r} for the record at row {getattr(record, 'index', None)}")
            raise

    def transform_batch(self, records: Sequence[Any]) -> Any:
        """Fetch every record's URL (in threads with ``max_workers``) and stack the samples.

        Parameters
        ----------
        records : sequence of Record
            The batch's records.

        Returns
        -------
        numpy.ndarray or tuple
            The samples, stacked by :meth:`finalize_batch`.
        """
        if self.max_workers is None or self.max_workers == 1 or len(records) <= 1:
            items = [self.transform(r) for r in records]
        else:
            with ThreadPoolExecutor(min(self.max_workers, len(records)), thread_name_prefix="batchup-urls") as ex:
                items = list(ex.map(self.transform, records))
        return self.finalize_batch(items)
