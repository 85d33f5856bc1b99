"""Errors raised while locating, downloading, verifying and unpacking data files.

They live in a module of their own so that :mod:`batchup.config` and
:mod:`batchup.datasets` can share them without importing each other. Each
one derives from the built-in exception a caller would already catch for that
kind of failure, so ``except OSError`` still sees a failed download and
``except ValueError`` still sees a checksum mismatch. The public homes are
:mod:`batchup.config` (all of them) and :mod:`batchup.datasets.dataset`.
"""
from __future__ import annotations

__all__ = [
    "ArchiveError",
    "ConfigError",
    "DownloadError",
    "IntegrityError",
    "UnsafeArchiveError",
]


class DownloadError(OSError):
    """A file could not be fetched: HTTP error status, refused connection,
    timeout, truncated body or a redirect batchup will not follow.

    ``status`` holds the HTTP status code when there was one, else ``None``.
    """

    status: int | None = None


class IntegrityError(ValueError):
    """A file's SHA-256 digest differs from the expected one."""


class ConfigError(ValueError):
    """The batchup configuration file cannot be parsed, or holds a bad value."""


class ArchiveError(ValueError):
    """An archive is unreadable: truncated, not a tar file, or missing a member."""


class UnsafeArchiveError(ArchiveError):
    """A tar member would escape the destination, is a link, or is a device."""
