"""Pieces every dataset module shares: file tables, split rules, ready data sources.

Each dataset module lists its files in a module-level tuple of
:class:`RemoteFile` (name, upstream URLs in the order they are tried,
SHA-256). The fetch function builds its
:class:`~batchup.datasets.dataset.DownloadSourceFile` objects from that
table at call time, so tests (or a user with a re-packed copy) can replace
the table, e.g. ``monkeypatch.setattr(mnist, "FILES", my_files)``.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Sequence

import numpy as np

from batchup._checks import is_int
from batchup._errors import FETCH_FAILURES, SourceUnavailableError
from batchup.datasets import _cache
from batchup.datasets.dataset import DownloadSourceFile
from batchup.image.utils import ImageArrayUInt8ToFloat32
from batchup.sources import ArrayDataSource

__all__ = ["RemoteFile", "SplitDataset", "check_count", "download_sources", "hosted", "open_cache", "split_last"]


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name, where to download it, and its SHA-256.

    ``url`` is tried first, then each of ``fallback_urls`` in order (other
    hosts of the same file: the mirrors other libraries use); every copy is
    verified against the same ``sha256``. :attr:`urls` lists them all.

    Parameters
    ----------
    filename : str
        The file's name (under ``temp/<dataset>`` and on a mirror).
    url : str
        The first URL tried.
    sha256 : str
        The file's digest, 64 hex digits.
    fallback_urls : tuple of str, default ()
        Further URLs of the same file, tried in order.

    Examples
    --------
    >>> f = RemoteFile("a.gz", "https://one.example/a.gz", "0" * 64, fallback_urls=("http://two.example/a.gz",))
    >>> f.urls
    ('https://one.example/a.gz', 'http://two.example/a.gz')
    """

    filename: str
    url: str
    sha256: str
    fallback_urls: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """Every URL of the file, in the order they are tried."""
        return (self.url, *self.fallback_urls)


def hosted(filename: str, sha256: str, *bases: str) -> RemoteFile:
    """Return the :class:`RemoteFile` ``filename`` found at ``base + filename`` for each of ``bases``, in order.

    Parameters
    ----------
    filename : str
        The file's name.
    sha256 : str
        Its digest.
    *bases : str
        Base URLs ending in ``/``, in the order to try them.

    Returns
    -------
    RemoteFile
        The file with ``url`` on the first base and ``fallback_urls`` on the others.

    Examples
    --------
    >>> hosted("a.gz", "0" * 64, "https://one.example/d/", "http://two.example/").urls
    ('https://one.example/d/a.gz', 'http://two.example/a.gz')
    """
    urls = tuple(base + filename for base in bases)
    return RemoteFile(filename, urls[0], sha256, fallback_urls=urls[1:])


def download_sources(files: Sequence[RemoteFile], dataset: str) -> list[DownloadSourceFile]:
    """Return download sources for ``files``, kept under ``temp/<dataset>``.

    Parameters
    ----------
    files : sequence of RemoteFile
        A dataset's file table.
    dataset : str
        The dataset's folder name.

    Returns
    -------
    list of DownloadSourceFile
        One source per file, in order.
    """
    return [DownloadSourceFile(f.filename, url=f.url, sha256=f.sha256, dataset=dataset,
                               fallback_urls=f.fallback_urls) for f in files]


def open_cache(fetch: Callable[..., str | None], name: str, **kwargs: Any) -> dict[str, np.ndarray]:
    """Fetch a dataset and return its cached arrays; a damaged cache is rebuilt once.

    ``fetch`` is a function made by
    :func:`~batchup.datasets.dataset.fetch_and_convert_dataset`; its raising
    twin ``fetch.or_raise`` is used when it has one.

    Parameters
    ----------
    fetch : callable
        The dataset's fetch function.
    name : str
        The dataset's name, for messages.
    **kwargs
        Passed to ``fetch``.

    Returns
    -------
    dict of str to numpy.ndarray
        The cached arrays, memory-mapped.

    Raises
    ------
    RuntimeError
        If the dataset cannot be fetched: a source could not be downloaded,
        copied or verified, or its archive is broken. The message gives the
        reason and ``__cause__`` holds the underlying
        :class:`~batchup.config.DownloadError`,
        :class:`~batchup.config.IntegrityError` or
        :class:`~batchup.config.ArchiveError` (a
        :class:`~batchup.datasets.dataset.SourceUnavailableError` when a
        source gave ``None`` without a reported reason).
    """
    fetch_or_raise = getattr(fetch, "or_raise", fetch)
    for attempt in (1, 2):
        try:
            path = fetch_or_raise(**kwargs)
        except FETCH_FAILURES as err:
            # chain the download/verification error itself, not the "could not acquire" wrapper
            cause = err.__cause__ if isinstance(err, SourceUnavailableError) and err.__cause__ else err
            raise RuntimeError(f"could not load the {name} dataset: {err}") from cause
        if path is None:
            raise RuntimeError(f"could not load the {name} dataset: {getattr(fetch, '__name__', 'fetch')} "
                               f"returned None (see the messages above)")
        try:
            return _cache.load(path)
        except _cache.CacheError as err:
            if attempt == 2:
                raise
            print(f"{err}; converting {name} again", file=sys.stderr)
            _cache.remove(path)
    raise AssertionError("unreachable")  # pragma: no cover


def check_count(value: Any, limit: int, name: str, unit: str = "training samples") -> int:
    """Return ``value`` (``None`` meaning 0) checked to lie in ``[0, limit)``.

    Parameters
    ----------
    value : int or None
        The count to check.
    limit : int
        One more than the largest value allowed.
    name : str
        The argument's name, for messages.
    unit : str, default "training samples"
        What ``limit`` counts, for messages.

    Returns
    -------
    int
        The count.

    Raises
    ------
    TypeError
        If ``value`` is not an int or ``None``.
    ValueError
        If it is outside ``[0, limit)``.
    """
    if value is None:
        return 0
    if not is_int(value):
        raise TypeError(f"{name} must be an int or None, got {value!r}")
    value = int(value)
    if not 0 <= value < limit:
        raise ValueError(f"{name} must be between 0 and {limit - 1} (there are {limit} {unit}), got {value}")
    return value


def split_last(X: Any, y: np.ndarray, n_val: int) -> tuple[Any, np.ndarray, Any, np.ndarray]:
    """Split off the last ``n_val`` samples as the validation set (no shuffling).

    Parameters
    ----------
    X : array-like
        The samples.
    y : numpy.ndarray
        The labels.
    n_val : int
        How many samples go to the validation set.

    Returns
    -------
    tuple
        ``(train_X, train_y, val_X, val_y)``; an empty validation set keeps
        the sample shape and the dtypes.
    """
    if n_val == 0:
        return X, y, np.zeros((0,) + tuple(X.shape[1:]), X.dtype), np.zeros((0,), y.dtype)
    return X[:-n_val], y[:-n_val], X[-n_val:], y[-n_val:]


class SplitDataset:
    """Mixin giving a dataset ready :class:`~batchup.sources.ArrayDataSource` objects for its splits.

    A split ``s`` is built from the attributes ``s_X`` (float32 view) or
    ``s_X_u8`` (``uint8=True``) and ``s_y``.
    """

    #: The split names :meth:`source` accepts.
    splits: tuple[str, ...] = ("train", "val", "test")

    def _split_arrays(self, split: str, uint8: bool) -> list[Any]:
        X = getattr(self, f"{split}_X_u8" if uint8 else f"{split}_X")
        return [X, getattr(self, f"{split}_y")]

    def source(self, split: str = "train", *, uint8: bool = False, **kwargs: Any) -> ArrayDataSource:
        """Return an ``ArrayDataSource`` over ``[X, y]`` of ``split``.

        Parameters
        ----------
        split : str, default 'train'
            One of :attr:`splits`.
        uint8 : bool, default False
            Keyword-only. Serve the raw uint8 images instead of the float32 view.
        **kwargs
            Passed to :class:`~batchup.sources.ArrayDataSource`
            (``indices``, ``repeats``, ``sampler``, ``include_indices``).

        Returns
        -------
        ArrayDataSource
            A data source over the split.
        """
        self._check_split(split)
        return ArrayDataSource(self._split_arrays(split, uint8), **kwargs)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"split must be one of {', '.join(map(repr, self.splits))}, got {split!r}")

    def train_source(self, **kwargs: Any) -> ArrayDataSource:
        """Return :meth:`source` for the training split.

        Parameters
        ----------
        **kwargs
            Passed to :meth:`source` (``uint8``, ``indices``, ...).

        Returns
        -------
        ArrayDataSource
            A data source over the training split.
        """
        return self.source("train", **kwargs)

    def val_source(self, **kwargs: Any) -> ArrayDataSource:
        """Return :meth:`source` for the validation split.

        Parameters
        ----------
        **kwargs
            Passed to :meth:`source` (``uint8``, ``indices``, ...).

        Returns
        -------
        ArrayDataSource
            A data source over the validation split.
        """
        return self.source("val", **kwargs)

    def test_source(self, **kwargs: Any) -> ArrayDataSource:
        """Return :meth:`source` for the test split.

        Parameters
        ----------
        **kwargs
            Passed to :meth:`source` (``uint8``, ``indices``, ...).

        Returns
        -------
        ArrayDataSource
            A data source over the test split.
        """
        return self.source("test", **kwargs)


class ImageSplits(SplitDataset):
    """Train/val/test uint8 images with float32 views, split by the last ``n_val`` samples."""

    def _set_splits(self, arrays: dict[str, np.ndarray], n_val: Any, val_lower: float, val_upper: float,
                    name: str = "n_val") -> None:
        train_X, train_y = arrays["train_X_u8"], np.asarray(arrays["train_y"], dtype=np.int32)
        n_val = check_count(n_val, len(train_y), name)
        self.train_X_u8, self.train_y, self.val_X_u8, self.val_y = split_last(train_X, train_y, n_val)
        self.test_X_u8 = arrays["test_X_u8"]
        self.test_y = np.asarray(arrays["test_y"], dtype=np.int32)
        self._wrap(val_lower, val_upper)

    def _wrap(self, val_lower: float, val_upper: float) -> None:
        self.train_X = ImageArrayUInt8ToFloat32(self.train_X_u8, val_lower, val_upper)
        self.val_X = ImageArrayUInt8ToFloat32(self.val_X_u8, val_lower, val_upper)
        self.test_X = ImageArrayUInt8ToFloat32(self.test_X_u8, val_lower, val_upper)
