"""Fetch-and-convert machinery shared by the standard datasets.

A dataset is made from one or more *source files* (downloaded, copied, or
already on disk) that a *converter* turns into a cache in the batchup data
directory. :func:`fetch_and_convert_dataset` wires the two together: it
returns the cache at once when it exists, and otherwise acquires the sources,
converts into a temporary name, renames the result into place, and only then
deletes the sources. The whole step holds a lock, so two processes never
convert the same dataset at once, and a crash never leaves a half-written
cache that a later run would trust.

The BatchUp 0.2 contract holds: :meth:`AbstractSourceFile.acquire` returns a
path or ``None``, and a fetch function returns the cache path or ``None``
after printing why (which source, and the download or verification error).
Each fetch function also has a raising twin, ``fetch.or_raise(**kwargs)``,
which the dataset classes use to raise ``RuntimeError`` with that reason as
its ``__cause__``.

Every call into :mod:`batchup.config` goes through the module attribute
(``config.download_data`` and so on), so replacing those helpers works, for
the raising twin too.
"""
from __future__ import annotations

import functools
import glob
import inspect
import os
import urllib.parse
from typing import Any, Callable, Iterable, Sequence, Union, cast

from batchup import _fetch, config
from batchup._errors import (
    FETCH_FAILURES,
    ArchiveError,
    DownloadError,
    IntegrityError,
    SourceUnavailableError,
    UnsafeArchiveError,
    collect_failures,
    report_failure,
)
from batchup.datasets import _cache

__all__ = [
    "AbstractSourceFile", "ArchiveError", "BatchUpSourceFile", "CopySourceFile", "DownloadError",
    "DownloadSourceFile", "ExistingSourceFile", "IntegrityError", "SourceUnavailableError", "UnsafeArchiveError",
    "classnames_from_h5", "delete_dataset_cache", "fetch_and_convert_dataset", "path_string",
]

PathLike = Union[str, Callable[[], str]]


def path_string(p: PathLike) -> str:
    """Return ``p`` if it is a string, ``p()`` if it is callable.

    Parameters
    ----------
    p : str or callable
        A path, or a zero-argument function returning one.

    Returns
    -------
    str
        The path.

    Raises
    ------
    TypeError
        If ``p`` is neither.

    Examples
    --------
    >>> path_string("mnist"), path_string(lambda: "cifar10")
    ('mnist', 'cifar10')
    """
    if isinstance(p, str):
        return p
    if callable(p):
        return p()
    raise TypeError(f"a path must be a str or a zero-argument callable, got {type(p).__name__}")


def classnames_from_h5(arr: Iterable[Any]) -> list[str]:
    """Return the class names stored in ``arr`` as a list of str (bytes decoded as latin-1).

    Parameters
    ----------
    arr : iterable
        Names as bytes or str.

    Returns
    -------
    list of str
        The names.

    Examples
    --------
    >>> classnames_from_h5([b"cat", "dog"])
    ['cat', 'dog']
    """
    return [x.decode("latin-1") if isinstance(x, bytes) else str(x) for x in arr]


class AbstractSourceFile:
    """A file a dataset is built from; :meth:`acquire` makes it available locally.

    Parameters
    ----------
    sha256 : str or None
        The expected SHA-256 digest (64 hex digits); ``None`` skips the check.
    """

    def __init__(self, sha256: str | None = None) -> None:
        self.sha256 = config.check_sha256(sha256)

    def acquire(self, **kwargs: Any) -> str | None:
        """Return a local path of the verified file, or ``None`` if it is unavailable.

        A subclass reports why it returns ``None`` (as
        :func:`batchup.config.download_and_verify` does), so that the reason
        reaches the user and the ``RuntimeError`` of a dataset class.

        Parameters
        ----------
        **kwargs
            The keyword arguments given to the fetch function (a
            :class:`CopySourceFile` reads its ``arg_name`` from them).

        Returns
        -------
        str or None
            The path, or ``None``.
        """
        raise NotImplementedError(f"Abstract for type {type(self).__name__}")

    def clean_up(self) -> None:
        """Delete what :meth:`acquire` created, once the dataset has been converted."""


def _plain_name(filename: str) -> str:
    if not isinstance(filename, str) or not filename or filename in (".", "..") or "/" in filename \
            or "\\" in filename or os.path.isabs(filename):
        raise ValueError(f"filename must be a plain file name inside the batchup data directory, "
                         f"got {filename!r}")
    return filename


class BatchUpSourceFile(AbstractSourceFile):
    """A source file kept under ``<data dir>/temp`` until its dataset is converted.

    Parameters
    ----------
    filename : str
        A plain file name.
    sha256 : str or None
        The expected digest.
    dataset : str, optional
        Keyword-only. A folder under ``temp`` (and under a download mirror)
        that keeps equally named files of different datasets apart, e.g.
        MNIST's and Fashion-MNIST's ``train-images-idx3-ubyte.gz``.

    Notes
    -----
    ``path`` is computed in the constructor from the data directory in effect
    then; constructing one therefore creates the batchup home.
    """

    def __init__(self, filename: str, sha256: str | None = None, *, dataset: str | None = None) -> None:
        super().__init__(sha256)
        self.filename = _plain_name(filename)
        self.dataset = None if dataset is None else _plain_name(dataset)
        self.temp_filename = os.path.join("temp", *([self.dataset] if self.dataset else []), self.filename)
        self.path = config.get_data_path(self.temp_filename)

    def clean_up(self) -> None:
        """Delete the file, then its ``temp/<dataset>`` and ``temp`` folders if that left them empty."""
        if os.path.isfile(self.path):
            os.remove(self.path)
        folder = os.path.dirname(self.path)
        for _ in range(2 if self.dataset else 1):
            try:
                os.rmdir(folder)
            except OSError:  # not empty (or already gone): leave it
                break
            folder = os.path.dirname(folder)


def _check_url(url: Any, name: str) -> str:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{name} must use the http or https scheme, got {url!r}")
    return url


class DownloadSourceFile(BatchUpSourceFile):
    """A source file downloaded from ``url`` (or ``base_url + filename``), else from ``fallback_urls``.

    :meth:`acquire` tries the URLs of :meth:`urls_to_try` in order, each with
    :func:`batchup.config.download_data` (its attempts and retries), and
    stops at the first that gives a file with the right SHA-256. With a
    mirror set (``$BATCHUP_MIRROR`` or ``[download] mirror``), the mirror's
    ``<mirror>/<dataset>/<filename>`` comes first; see
    :func:`batchup.config.source_urls`.

    Parameters
    ----------
    filename, url, base_url, sha256
        As in BatchUp 0.2.
    dataset : str, optional
        Keyword-only; see :class:`BatchUpSourceFile`.
    fallback_urls : sequence of str, default ()
        Keyword-only. Other http(s) URLs of the same file, tried in order
        after ``url``.

    Raises
    ------
    TypeError
        If neither ``url`` nor ``base_url`` is given.
    ValueError
        If a URL is not http/https, ``sha256`` is not 64 hex digits, or
        ``filename`` is not a plain name.

    Examples
    --------
    >>> f = DownloadSourceFile("t10k-labels-idx1-ubyte.gz", base_url="https://example.org/mnist",
    ...                        dataset="mnist")  # doctest: +SKIP
    >>> f.url  # doctest: +SKIP
    'https://example.org/mnist/t10k-labels-idx1-ubyte.gz'
    """

    def __init__(self, filename: str, url: str | None = None, base_url: str | None = None,
                 sha256: str | None = None, *, dataset: str | None = None,
                 fallback_urls: Sequence[str] = ()) -> None:
        if url is None and base_url is None:
            raise TypeError("DownloadSourceFile needs url or base_url; both are None")
        if url is None:
            base = str(base_url)
            url = base + filename if base.endswith("/") else base + "/" + filename
        if isinstance(fallback_urls, str) or not isinstance(fallback_urls, Iterable):
            raise TypeError(f"fallback_urls must be a sequence of URLs, not {type(fallback_urls).__name__}: "
                            f"{fallback_urls!r}")
        self.url = _check_url(url, "url")
        self.fallback_urls = tuple(_check_url(u, f"fallback_urls[{i}]") for i, u in enumerate(fallback_urls))
        super().__init__(filename, sha256, dataset=dataset)

    def __str__(self) -> str:
        more = len(self.fallback_urls)
        return f"downloadable file {self.filename} from {self.url}" + (
            f" (or {more} other URL{'s' if more > 1 else ''})" if more else "")

    def urls_to_try(self) -> list[str]:
        """Return the URLs :meth:`acquire` tries, in order (the mirror's copy first, when one is set).

        Returns
        -------
        list of str
            See :func:`batchup.config.source_urls`.
        """
        return config.source_urls((self.url, *self.fallback_urls), self.dataset)

    def acquire(self, **kwargs: Any) -> str | None:
        """Download the file from the first of :meth:`urls_to_try` that serves it intact.

        Parameters
        ----------
        **kwargs
            Ignored (the fetch function's keyword arguments).

        Returns
        -------
        str or None
            The path, or ``None`` after reporting why: the one URL's error,
            or, when several were tried, a
            :class:`~batchup.config.DownloadError` (an
            :class:`~batchup.config.IntegrityError` if every URL served a
            wrong file) that lists each URL with its reason.
        """
        urls = self.urls_to_try()
        failures: list[tuple[str, Exception | None]] = []
        for url in urls:
            with collect_failures() as reported:
                path = config.download_data(self.temp_filename, url, self.sha256)
            if path is not None:
                return path
            failures.append((url, reported[-1] if reported else None))
        if len(failures) == 1 and failures[0][1] is not None:
            report_failure(failures[0][1])
        else:
            report_failure(_fetch.sources_failed(self.filename, failures, config._mirror_note()))
        return None


class CopySourceFile(BatchUpSourceFile):
    """A source file copied from ``source_path``, or from the keyword ``arg_name`` given to fetch.

    Parameters
    ----------
    filename : str
        A plain file name (under ``temp/``).
    source_path : str, optional
        The file to copy.
    arg_name : str, optional
        Without ``source_path``: the keyword argument of the fetch function
        that names the file to copy.
    sha256 : str or None
        The expected digest.
    dataset : str, optional
        Keyword-only; see :class:`BatchUpSourceFile`.

    Raises
    ------
    TypeError
        If neither ``source_path`` nor ``arg_name`` is given.
    """

    def __init__(self, filename: str, source_path: str | None = None, arg_name: str | None = None,
                 sha256: str | None = None, *, dataset: str | None = None) -> None:
        if source_path is None and arg_name is None:
            raise TypeError("CopySourceFile needs source_path or arg_name; both are None")
        self.source_path, self.arg_name = source_path, arg_name
        super().__init__(filename, sha256, dataset=dataset)

    def __str__(self) -> str:
        return f"file {self.filename} on filesystem at {self.source_path}"

    def acquire(self, **kwargs: Any) -> str | None:
        """Copy the file into ``temp/`` and verify it.

        Parameters
        ----------
        **kwargs
            The fetch function's keyword arguments; ``kwargs[arg_name]`` is
            the file to copy when there is no ``source_path``.

        Returns
        -------
        str or None
            The path, or ``None`` after reporting why (a missing file or
            keyword, a digest mismatch).
        """
        src = self.source_path if self.source_path is not None else kwargs.get(str(self.arg_name))
        if src is None:
            report_failure(SourceUnavailableError(f"pass {self.arg_name}=<path of {self.filename}> "
                                                  f"to fetch this dataset"))
            return None
        path = config.copy_data(self.temp_filename, src, self.sha256)
        if path is None and not os.path.exists(src):  # copy_data is silent about a missing source
            report_failure(SourceUnavailableError(f"{src} does not exist"))
        return path


class ExistingSourceFile(AbstractSourceFile):
    """A file already in its final place; never deleted by :meth:`clean_up`.

    Parameters
    ----------
    path : str or callable
        The file, or a zero-argument function returning it (resolved when used).
    sha256 : str or None
        The expected digest.
    """

    def __init__(self, path: PathLike, sha256: str | None = None) -> None:
        if not isinstance(path, str) and not callable(path):
            raise TypeError(f"path must be a str or a zero-argument callable, got {type(path).__name__}")
        super().__init__(sha256)
        self.path = path

    def __str__(self) -> str:
        return f"file at {path_string(self.path)}"

    def acquire(self, **kwargs: Any) -> str | None:
        """Return the file's path if it exists and its digest matches.

        Parameters
        ----------
        **kwargs
            Ignored.

        Returns
        -------
        str or None
            The path, or ``None`` (a mismatch is reported; a missing file is not).
        """
        p = path_string(self.path)
        if not os.path.exists(p):
            return None
        if config.verify_file(p, self.sha256):
            return p
        if os.path.isfile(p) and self.sha256 is not None:
            report_failure(IntegrityError(f"SHA-256 mismatch for {p}: expected {self.sha256}, "
                                          f"got {config.compute_sha256(p)}"))
        return None


def _check_sources(source_files: Sequence[Any]) -> list[AbstractSourceFile]:
    sources = list(source_files)
    for i, src in enumerate(sources):
        if not isinstance(src, AbstractSourceFile):
            raise TypeError(f"source_files[{i}] must be an AbstractSourceFile, got {type(src).__name__}")
    return sources


def _acquire(src: AbstractSourceFile, kwargs: dict[str, Any]) -> str:
    """Return ``src.acquire(**kwargs)``; raise SourceUnavailableError, caused by the reported failure, on ``None``."""
    with collect_failures() as failures:
        path = src.acquire(**kwargs)
    if path is not None:
        return path
    cause = failures[-1] if failures else None
    raise SourceUnavailableError(f"could not acquire {src}" + (f": {cause}" if cause is not None else "")) \
        from cause


def fetch_and_convert_dataset(source_files: Sequence[AbstractSourceFile] | Callable[[], Sequence[Any]],
                              target_filename: PathLike) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate ``convert(source_paths, target_path)`` into ``fetch(**kwargs) -> path or None``.

    Parameters
    ----------
    source_files : list of AbstractSourceFile, or a zero-argument callable returning one
        The files to acquire, in order. A callable is called at fetch time,
        so source paths are not computed at import.
    target_filename : str or zero-argument callable
        The cache name, relative to the batchup data directory.

    Returns
    -------
    callable
        The decorator. The ``fetch(**kwargs)`` it makes returns the cache
        path, or ``None`` when a source could not be acquired or the
        conversion found the data broken (a :class:`DownloadError`,
        :class:`IntegrityError`, :class:`ArchiveError` or
        :class:`SourceUnavailableError`): the reason, naming the source, is
        printed on stderr. ``fetch.or_raise(**kwargs)`` does the same work
        but raises that error instead (what the dataset classes use).

    Raises
    ------
    TypeError
        At the factory call, for a bad ``target_filename`` or a source that
        is not an :class:`AbstractSourceFile`.

    Notes
    -----
    ``fetch`` returns the existing cache without acquiring anything. Otherwise
    it locks the target, acquires the sources (``**kwargs`` go to
    ``acquire``; a source returning ``None`` stops the fetch, keeping the
    sources acquired so far for the next try), calls ``convert`` with a
    temporary target path and renames the result into place; if ``convert``
    raises, the temporary output is deleted. Sources are cleaned up only
    after a successful conversion. Errors other than the four above (a full
    disk, Ctrl-C, two sources resolving to one file) propagate from both.

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> home = os.environ["BATCHUP_HOME"] = tempfile.mkdtemp()
    >>> @fetch_and_convert_dataset([CopySourceFile("raw.txt", source_path="/nonexistent/raw.txt")], "words")
    ... def fetch_words(source_paths, target_path):
    ...     os.rename(source_paths[0], target_path)
    ...     return target_path
    >>> fetch_words() is None          # prints why on stderr
    True
    >>> fetch_words.or_raise()
    Traceback (most recent call last):
    ...
    batchup._errors.SourceUnavailableError: could not acquire file raw.txt on filesystem at /nonexistent/raw.txt: /nonexistent/raw.txt does not exist
    >>> del os.environ["BATCHUP_HOME"]; shutil.rmtree(home)
    """
    if not isinstance(target_filename, str) and not callable(target_filename):
        raise TypeError(f"target_filename must be a str or a callable, got {type(target_filename).__name__}")
    if callable(source_files) and not isinstance(source_files, (list, tuple)):
        make_sources: Callable[[], Sequence[Any]] = source_files
    else:
        checked = _check_sources(cast(Sequence[Any], source_files))
        make_sources = lambda: checked  # noqa: E731

    def decorate(convert: Callable[[list[str], str], Any]) -> Callable[..., Any]:
        def or_raise(**kwargs: Any) -> str | None:
            """Fetch like the function this belongs to, but raise the reason instead of returning ``None``."""
            target_path = config.get_data_path(path_string(target_filename))
            if _cache.is_complete(target_path):
                return target_path
            sources = _check_sources(make_sources())
            with config.file_lock(target_path):
                if _cache.is_complete(target_path):
                    return target_path
                _cache.remove(target_path)  # an unfinished folder that is not a cache
                for stale in glob.glob(glob.escape(target_path) + ".tmp-*"):
                    _cache.remove(stale)  # left by a killed conversion (we hold the lock)
                paths: list[str] = []
                for src in sources:
                    path = _acquire(src, kwargs)
                    if path in paths:
                        raise ValueError(f"two sources of {target_path} resolve to the same file {path}")
                    paths.append(path)
                tmp = f"{target_path}.tmp-{os.getpid()}"
                try:
                    result = convert(paths, tmp)
                    if result is not None and os.path.abspath(result) == os.path.abspath(tmp):
                        os.replace(tmp, target_path)
                        result = target_path
                finally:
                    _cache.remove(tmp)
                if result is not None:
                    for src in sources:
                        src.clean_up()
                return result

        @functools.wraps(convert)
        def fetch(**kwargs: Any) -> str | None:
            try:
                return or_raise(**kwargs)
            except FETCH_FAILURES as err:
                report_failure(err)
                return None

        or_raise.__qualname__ = f"{convert.__qualname__}.or_raise"
        # Function attributes: typeshed's function type declares neither or_raise (part of this
        # decorator's API) nor __signature__ (which inspect.signature reads).
        fetch.or_raise = or_raise  # type: ignore[attr-defined]
        # what callers see is fetch(**kwargs), not the converter's (source_paths, target_path)
        fetch.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)], return_annotation="str | None")
        return fetch

    return decorate


def delete_dataset_cache(*filenames: PathLike) -> None:
    """Delete the named caches (files or cache folders) from the batchup data directory.

    Parameters
    ----------
    *filenames : str or callable
        Cache names relative to the data directory (see :func:`path_string`);
        missing ones are skipped.
    """
    for name in filenames:
        _cache.remove(config.get_data_path(path_string(name)))
