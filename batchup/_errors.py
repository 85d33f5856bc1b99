"""Errors raised while locating, downloading, verifying and unpacking data files.

They live in a module of their own so that :mod:`batchup.config` and
:mod:`batchup.datasets` can share them without importing each other. Each
one derives from the built-in exception a caller would already catch for that
kind of failure, so ``except OSError`` still sees a failed download and
``except ValueError`` still sees a checksum mismatch. The public homes are
:mod:`batchup.config` (all of them) and :mod:`batchup.datasets.dataset`.

The BatchUp 0.2 functions (``download_and_verify``, ``copy_and_verify``,
``AbstractSourceFile.acquire``, the fetch functions) do not raise these:
they *report* the failure and return ``None``. :func:`report_failure` is that
report. It prints the error on stderr, unless a :func:`collect_failures`
block is active, in which case the block receives the error object instead;
that is how the dataset classes turn a ``None`` back into an error that
carries the full reason.
"""
from __future__ import annotations

import contextlib
import contextvars
import pickle
import sys
from typing import Iterator

__all__ = [
    "ArchiveError",
    "ConfigError",
    "DownloadError",
    "FETCH_FAILURES",
    "IntegrityError",
    "SourceUnavailableError",
    "UnsafeArchiveError",
    "UnsafePickleError",
    "collect_failures",
    "report_failure",
]


class DownloadError(OSError):
    """A file could not be fetched: HTTP error status, refused connection,
    timeout, truncated body or a redirect batchup will not follow.

    Attributes
    ----------
    status : int or None
        The HTTP status code when there was one.
    retry_after : float or None
        Seconds the server asked to wait (``Retry-After``) before another try.
    retryable : bool or None
        Whether another attempt may succeed; ``None`` lets the status decide.
    detail : str or None
        The reason without the URL, for a list of failed sources.
    url : str or None
        The URL that failed, once every attempt at it has.
    attempts : int or None
        How many attempts were made at ``url``.
    """

    status: int | None = None
    retry_after: float | None = None
    retryable: bool | None = None
    detail: str | None = None
    url: str | None = None
    attempts: int | None = None


class IntegrityError(ValueError):
    """A file's SHA-256 digest differs from the expected one.

    Attributes
    ----------
    detail : str or None
        The two digests (and a hint when the server sent an HTML page),
        without the file and URL, for a list of failed sources.
    url : str or None
        The URL the file came from, once every attempt at it has failed.
    attempts : int or None
        How many attempts were made at ``url``.
    """

    detail: str | None = None
    url: str | None = None
    attempts: int | None = None


class ConfigError(ValueError):
    """The batchup configuration file cannot be parsed, or holds a bad value."""


class ArchiveError(ValueError):
    """An archive is unreadable: truncated, not a tar file, or missing a member."""


class UnsafeArchiveError(ArchiveError):
    """A tar member would escape the destination, is a link, or is a device."""


class UnsafePickleError(UnsafeArchiveError, pickle.UnpicklingError):
    """A pickle in a dataset archive names a global other than NumPy's array machinery.

    Also a ``pickle.UnpicklingError``, what an unpickler raises for a bad pickle.
    """


class SourceUnavailableError(RuntimeError):
    """A dataset's source file could not be acquired; the message says which and why.

    The reason, when known, is the ``__cause__`` (a :class:`DownloadError`,
    :class:`IntegrityError`, ...).
    """


#: What makes a BatchUp 0.2 function report and return ``None`` instead of raising.
#: Anything else (a full disk, Ctrl-C, a bad argument or config file) propagates.
FETCH_FAILURES = (DownloadError, IntegrityError, ArchiveError, SourceUnavailableError)

_collector: contextvars.ContextVar[list[Exception] | None] = contextvars.ContextVar(
    "batchup_fetch_failures", default=None)


def report_failure(err: Exception) -> None:
    """Report ``err`` from a function that returns ``None`` on failure.

    Inside a :func:`collect_failures` block the error is handed to the block
    (and not printed); otherwise ``<ErrorType>: <message>`` is printed on
    stderr, like the download progress.
    """
    box = _collector.get()
    if box is not None:
        box.append(err)
    else:
        print(f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def collect_failures() -> Iterator[list[Exception]]:
    """Collect, instead of printing, what :func:`report_failure` reports in the ``with`` block.

    Examples
    --------
    >>> with collect_failures() as failures:
    ...     report_failure(DownloadError("HTTP 404 Not Found for http://example.invalid/a.gz"))
    >>> failures
    [DownloadError('HTTP 404 Not Found for http://example.invalid/a.gz')]
    """
    box: list[Exception] = []
    token = _collector.set(box)
    try:
        yield box
    finally:
        _collector.reset(token)
