"""Where batchup keeps its data, and how files get there intact.

The *batchup home* is ``$BATCHUP_HOME`` when that variable is set and not
empty, otherwise the ``data_dir`` option of the ``[paths]`` section of
``~/.batchup.cfg``, otherwise ``~/.batchup``. Datasets live in
``<home>/data``. (BatchUp 0.2.3 let the config file beat the environment
variable; batchup lets an explicitly set variable win, because that is the
override people reach for in scripts, CI jobs and cluster submissions.)

Downloads are verified and atomic: a file is fetched with timeouts and
retries into ``<path>.unverified`` (bytes arrive in ``.unverified.part``,
resumed with an HTTP range request after an interruption), its SHA-256 is
checked, and only then is it renamed to ``<path>``. A file already at
``<path>`` is verified before it is trusted. An inter-process lock
(:func:`file_lock`) lets one process fetch while others wait for its result.
A fetch that fails leaves nothing behind: no partial file, no folder it
created.

``[download] mirror=`` in the config file, or ``$BATCHUP_MIRROR``, names a
base URL tried before the upstream hosts (see :func:`source_urls`).

As in BatchUp 0.2, :func:`download_and_verify`, :func:`copy_and_verify`,
:func:`download_data` and :func:`copy_data` return ``None`` when the file
cannot be had: the reason (URL, attempts, HTTP status, expected and actual
SHA-256, mirror setting) is printed on stderr as a ``DownloadError: ...`` or
``IntegrityError: ...`` line. Local failures (a full disk), Ctrl-C, a bad
argument or an unusable config file still raise. The dataset classes turn a
failed fetch into a ``RuntimeError`` whose ``__cause__`` is that error.

The helpers of BatchUp 0.2 (``urlretrieve``, ``download``,
``get_batchup_path``, ``get_data_dir``) are looked up through this module at
call time, so they can be replaced, e.g. ``batchup.config.urlretrieve =
my_fetch``; so are the knobs :data:`TIMEOUT`, :data:`TRIES`, :data:`BACKOFF`
and :data:`MAX_DELAY`. The HTTP client and its retry policy live in
``batchup._http`` (shared with the URL record encoder), the download
machinery in ``batchup._fetch`` and the lock in ``batchup._filelock``. Nothing happens at import: no directory is created
and no file is read until a function asks for it.
"""
from __future__ import annotations

import configparser
import contextlib
import hashlib
import os
import shutil
import urllib.parse
from typing import Any, Callable, Iterator, Sequence

from batchup import _fetch, _filelock, _http
from batchup._errors import (
    ArchiveError,
    ConfigError,
    DownloadError,
    IntegrityError,
    UnsafeArchiveError,
    report_failure,
)
from batchup._filelock import LockUnavailableWarning

__all__ = [
    "ArchiveError", "ConfigError", "DownloadError", "IntegrityError", "LockUnavailableWarning", "UnsafeArchiveError",
    "compute_sha256", "copy_and_verify", "copy_data", "download", "download_and_verify", "download_data",
    "file_lock", "get_batchup_path", "get_config", "get_config_path", "get_data_dir", "get_data_path",
    "get_mirror", "get_mirror_only", "mirror_url", "reset_config", "source_urls", "urlretrieve", "verify_file",
]

#: Environment variable naming the batchup home (wins over the config file).
HOME_ENV = "BATCHUP_HOME"
#: Environment variable naming a download mirror (wins over ``[download] mirror``).
MIRROR_ENV = "BATCHUP_MIRROR"
#: Environment variable that, set to 1/true/yes/on, keeps downloads to the mirror (wins over
#: ``[download] mirror_only``).
MIRROR_ONLY_ENV = "BATCHUP_MIRROR_ONLY"
#: Seconds to wait for a connection, and for each read, before a try fails.
TIMEOUT = 30.0
#: Download attempts per URL before :func:`download_and_verify` gives up (HTTP 4xx: one attempt).
TRIES = 3
#: Seconds before the second attempt; doubles for each further attempt (at most :data:`MAX_DELAY`).
BACKOFF = 1.0
#: The longest wait between attempts, in seconds. A server's ``Retry-After`` is honoured up to this;
#: one asking for longer ends the attempts at that URL (the next URL is tried instead).
MAX_DELAY = 60.0
_CHUNK = 1 << 20
_config_cache: dict[str, configparser.RawConfigParser] = {}


class BatchupHomeError(NotADirectoryError, RuntimeError):
    """The batchup home exists but is not a directory.

    Also a ``RuntimeError``, the type BatchUp 0.2 raised here.
    """


# -- configuration -------------------------------------------------------------------------------------

def get_config_path() -> str:
    """Return the path of the config file, ``~/.batchup.cfg`` (expanded at each call).

    Returns
    -------
    str
        The absolute path; the file need not exist.
    """
    return os.path.expanduser(os.path.join("~", ".batchup.cfg"))


def get_config() -> configparser.RawConfigParser:
    """Return the parsed config file (an empty parser when there is none).

    The result is cached per file path until :func:`reset_config`.

    Returns
    -------
    configparser.RawConfigParser
        The parsed sections (``[paths]``, ``[download]``).

    Raises
    ------
    ConfigError
        If the file cannot be parsed; the message names the file and the line.
    OSError
        If the file exists but cannot be read (the message names it).
    """
    path = get_config_path()
    parser = _config_cache.get(path)
    if parser is None:
        parser = configparser.RawConfigParser()
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    parser.read_file(f, source=path)
            except configparser.Error as err:
                raise ConfigError(f"cannot parse the batchup config file {path}: {err}") from err
        _config_cache[path] = parser
    return parser


def reset_config() -> None:
    """Forget the cached config file, so the next call reads it again.

    Paths and the mirror are never cached: they follow ``$BATCHUP_HOME`` and
    ``$BATCHUP_MIRROR`` at every call.
    """
    _config_cache.clear()


def _config_value(section: str, option: str) -> str | None:
    parser = get_config()
    if parser.has_option(section, option):
        value = parser.get(section, option).strip()
        return value or None
    return None


def get_batchup_path() -> str:
    """Return the batchup home directory, creating it if needed.

    ``$BATCHUP_HOME`` (when set and not empty) wins over ``[paths] data_dir``
    in ``~/.batchup.cfg``, which wins over ``~/.batchup``. ``~`` is expanded.

    Returns
    -------
    str
        The absolute path of the home directory.

    Raises
    ------
    NotADirectoryError
        If the path exists and is not a directory (the error is also a
        ``RuntimeError``, as in BatchUp 0.2).
    """
    home = os.environ.get(HOME_ENV) or _config_value("paths", "data_dir") or os.path.join("~", ".batchup")
    home = os.path.abspath(os.path.expanduser(home))
    if os.path.exists(home) and not os.path.isdir(home):
        raise BatchupHomeError(f"the batchup home {home!r} exists but is not a directory "
                               f"(set {HOME_ENV} or [paths] data_dir in {get_config_path()})")
    os.makedirs(home, exist_ok=True)
    return home


def get_data_dir() -> str:
    """Return ``<batchup home>/data`` (not created here).

    Returns
    -------
    str
        The data directory, where downloads (``temp/``), caches and lock
        files (``.locks/``) go.
    """
    return os.path.join(get_batchup_path(), "data")


def get_data_path(filename: str) -> str:
    """Return the path of ``filename`` inside the batchup data directory.

    Parameters
    ----------
    filename : str
        A relative path, e.g. ``"mnist"`` or ``"temp/mnist/t10k-labels-idx1-ubyte.gz"``.

    Returns
    -------
    str
        ``os.path.join(get_data_dir(), filename)``.

    Raises
    ------
    ValueError
        If ``filename`` is absolute, empty, or climbs out with ``..``: every
        cache file stays inside the batchup data directory.
    """
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str, got {type(filename).__name__}")
    parts = filename.replace("\\", "/").split("/")
    if not filename or os.path.isabs(filename) or ".." in parts or os.path.splitdrive(filename)[0]:
        raise ValueError(f"filename must be a relative path inside the batchup data directory, got {filename!r}")
    return os.path.join(get_data_dir(), filename)


def get_mirror() -> str | None:
    """Return the mirror base URL, or ``None`` to use the official hosts.

    ``$BATCHUP_MIRROR`` (when set and not empty) wins over ``[download] mirror``.

    Returns
    -------
    str or None
        The http(s) base URL of the mirror, or ``None``.

    Raises
    ------
    ConfigError
        If the mirror is not an ``http``/``https`` URL.
    """
    mirror = os.environ.get(MIRROR_ENV) or _config_value("download", "mirror")
    if mirror is not None and urllib.parse.urlsplit(mirror).scheme not in ("http", "https"):
        raise ConfigError(f"the download mirror must be an http or https URL, got {mirror!r}")
    return mirror


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def get_mirror_only() -> bool:
    """Return whether downloads stay on the mirror (the upstream URLs are not tried when it fails).

    ``$BATCHUP_MIRROR_ONLY`` (when set and not empty) wins over ``[download]
    mirror_only``; both take 1/0, true/false, yes/no or on/off. Without a
    mirror the setting has no effect.

    Returns
    -------
    bool
        ``True`` to keep downloads to the mirror; ``False`` (the default) to
        try the upstream URLs after it.

    Raises
    ------
    ConfigError
        If the value is none of those words.
    """
    value = os.environ.get(MIRROR_ONLY_ENV) or _config_value("download", "mirror_only")
    if value is None:
        return False
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"mirror_only must be one of {', '.join(_TRUE + _FALSE)}, got {value!r}")


def source_urls(urls: Sequence[str], subdir: str | None = None) -> list[str]:
    """Return the URLs to try for a file, in order: the mirror's copy first (when set), then ``urls``.

    With a mirror set, the file's copy on the mirror (:func:`mirror_url` of
    the first URL) comes first; the upstream ``urls`` follow unless
    :func:`get_mirror_only` says to stay on the mirror. Duplicates are
    dropped.

    Parameters
    ----------
    urls : sequence of str
        The file's upstream URLs, in order (at least one).
    subdir : str, optional
        The file's folder on the mirror (the dataset's name).

    Returns
    -------
    list of str
        The URLs in the order they are tried.

    Raises
    ------
    ValueError
        If ``urls`` is empty.
    ConfigError
        If the mirror settings are bad.

    Examples
    --------
    >>> import os
    >>> urls = ["https://a.example/mnist/t10k-labels-idx1-ubyte.gz", "http://b.example/t10k-labels-idx1-ubyte.gz"]
    >>> source_urls(urls, "mnist") == urls
    True
    >>> os.environ["BATCHUP_MIRROR"] = "http://127.0.0.1:8000/data"
    >>> source_urls(urls, "mnist")[0]
    'http://127.0.0.1:8000/data/mnist/t10k-labels-idx1-ubyte.gz'
    >>> len(source_urls(urls, "mnist"))
    3
    >>> del os.environ["BATCHUP_MIRROR"]
    """
    urls = list(urls)
    if not urls:
        raise ValueError("urls must hold at least one URL, got none")
    order = urls
    if get_mirror() is not None:
        mirrored = mirror_url(urls[0], subdir)
        order = [mirrored] if get_mirror_only() else [mirrored] + urls
    return list(dict.fromkeys(order))


def mirror_url(url: str, subdir: str | None = None) -> str:
    """Return where to fetch ``url`` from: itself, or its file name under the mirror.

    With a mirror ``M`` set, ``http://host/a/b/file.gz`` becomes
    ``M/<subdir>/file.gz`` (``M/file.gz`` without ``subdir``).

    Parameters
    ----------
    url : str
        An upstream URL.
    subdir : str, optional
        The folder on the mirror.

    Returns
    -------
    str
        ``url`` without a mirror, else its copy on the mirror.

    Examples
    --------
    >>> import os
    >>> os.environ["BATCHUP_MIRROR"] = "http://127.0.0.1:8000/data"
    >>> mirror_url("http://yann.lecun.com/exdb/mnist/t10k-labels-idx1-ubyte.gz", "mnist")
    'http://127.0.0.1:8000/data/mnist/t10k-labels-idx1-ubyte.gz'
    >>> del os.environ["BATCHUP_MIRROR"]
    """
    mirror = get_mirror()
    if mirror is None:
        return url
    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    prefix = mirror.rstrip("/") + "/" + (subdir.strip("/") + "/" if subdir else "")
    return prefix + name


# -- hashing ------------------------------------------------------------------------------------------

def compute_sha256(path: str) -> str:
    """Return the lowercase hex SHA-256 digest of the file at ``path``.

    Parameters
    ----------
    path : str
        The file, read in 1 MiB blocks.

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str, sha256: str | None) -> bool:
    """Return whether ``path`` is a regular file with the digest ``sha256``.

    With ``sha256=None`` the file's digest is printed (so it can be recorded)
    and the file is accepted.

    Parameters
    ----------
    path : str
        The file.
    sha256 : str or None
        The expected digest (any case).

    Returns
    -------
    bool
        ``False`` if ``path`` is not a regular file or its digest differs.
    """
    if not os.path.isfile(path):
        return False
    actual = compute_sha256(path)
    if sha256 is None:
        _fetch.say(f"SHA-256 of {path} is {actual}")
        return True
    return actual == sha256.lower()


def check_sha256(sha256: Any, name: str = "sha256") -> str | None:
    """Return ``sha256`` lower-cased; raise ValueError unless it is ``None`` or 64 hex digits."""
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
        raise ValueError(f"{name} must be None or a string of 64 hex digits, got {sha256!r}")
    return sha256.lower()


def _mirror_note() -> str:
    try:
        return get_mirror() or "none (upstream URLs only)"
    except ConfigError:  # a bad mirror setting must not hide the failure being reported
        return "unreadable"


def _trusted_existing(path: str, sha256: str | None) -> bool:
    """Return whether a file already at ``path`` can be used; remove it if it fails verification."""
    if not os.path.isfile(path):
        return False
    if verify_file(path, sha256):
        return True
    _fetch.say(f"{path} is corrupt (SHA-256 mismatch); fetching it again")
    _fetch.remove(path)
    return False


def _lock_root() -> str | None:
    try:
        return get_data_dir()
    except (OSError, ConfigError):  # no usable home: lock beside the file
        return None


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` for the ``with`` block.

    Other processes (and threads) locking the same path wait, saying so on
    stderr. The lock is the ``filelock`` package's when it is installed,
    else ``fcntl.flock`` (POSIX) or ``msvcrt.locking`` (Windows); it dies
    with its process. The lock file of a path inside the data directory is
    kept in ``<data dir>/.locks/``, that of any other path is ``<path>.lock``;
    lock files are not deleted (deleting one that another process waits on
    would break the lock). See ``batchup._filelock`` for the platform notes.

    Parameters
    ----------
    path : str
        The file to protect (it need not exist).

    Yields
    ------
    None
        While the lock is held.

    Examples
    --------
    >>> import os, tempfile
    >>> os.environ["BATCHUP_HOME"] = home = tempfile.mkdtemp()
    >>> with file_lock(get_data_path("notes.txt")):
    ...     sorted(os.listdir(get_data_dir()))
    ['.locks']
    >>> import shutil; shutil.rmtree(home); del os.environ["BATCHUP_HOME"]
    """
    with _filelock.file_lock(path, root=_lock_root()):
        yield


def _policy() -> _http.RetryPolicy:
    return _http.RetryPolicy(tries=TRIES, backoff=BACKOFF, max_delay=MAX_DELAY)


# -- downloads and copies (the BatchUp 0.2 functions) --------------------------------------------------

def urlretrieve(url: str, filename: str, reporthook: Callable[[int, int, int], Any] | None = None,
                *, timeout: float | None = None) -> tuple[str, Any]:
    """Fetch ``url`` into ``filename`` in one try; the bytes land in ``filename + '.part'`` first.

    A ``.part`` left by an interrupted try is resumed with an HTTP range
    request (restarted when the server ignores it). ``reporthook`` is called
    as ``hook(bytes_so_far, 1, total_bytes)``, ``total_bytes`` being ``-1``
    when unknown. ``timeout`` defaults to :data:`TIMEOUT`. Returns
    ``(filename, headers)`` like :func:`urllib.request.urlretrieve`.

    :func:`download` calls ``batchup.config.urlretrieve(url, path,
    reporthook=hook)``, so assigning another function here (one with that
    signature) changes how every file is fetched.

    Parameters
    ----------
    url : str
        An http or https URL.
    filename : str
        Where the finished file goes.
    reporthook : callable, optional
        Called with the progress, as above.
    timeout : float, optional
        Keyword-only. Seconds for connecting and for each read.

    Returns
    -------
    tuple
        ``(filename, headers)``, the response headers as an
        :class:`email.message.Message`.

    Raises
    ------
    DownloadError
        For an HTTP error status (``.status`` holds it), a refused or timed-out
        connection, a body shorter than its ``Content-Length``, or a redirect
        to a scheme other than http/https.
    ValueError
        If ``url`` is not http or https.
    OSError
        If writing the local file fails (e.g. the disk is full).
    """
    return _fetch.http_get(url, filename, reporthook, timeout or TIMEOUT)


def download(path: str, source_url: str) -> str:
    """Download ``source_url`` to ``path`` (no verification) and return ``path``.

    An existing ``path`` is returned at once. Progress is shown with tqdm.
    Uses ``batchup.config.urlretrieve`` (replaceable). On any error the file
    at ``path`` is removed (and the folders this call created, if nothing
    else is in them) and the error propagates: this is the one try that
    :func:`download_and_verify` repeats.

    Parameters
    ----------
    path : str
        Where the file goes.
    source_url : str
        An http or https URL.

    Returns
    -------
    str
        ``path``.
    """
    folder = os.path.dirname(path)
    with _fetch.tidy_dirs(folder or "."):
        _makedirs(folder)
        if os.path.exists(path):
            return path
        _fetch.say(f"Downloading {source_url} to {path}")
        progress = _fetch.Progress(os.path.basename(path))
        try:
            urlretrieve(source_url, path, reporthook=progress.hook)
        except BaseException:
            _fetch.remove(path)
            raise
        finally:
            progress.close()
        return path


def _makedirs(folder: str) -> None:
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except FileNotFoundError:  # a parent was removed meanwhile (another process tidying up): once more
        os.makedirs(folder, exist_ok=True)


def _download_and_verify(path: str, source_url: str, sha256: str | None) -> str:
    """:func:`download_and_verify`, raising ``DownloadError``/``IntegrityError`` instead of returning ``None``."""
    sha256 = check_sha256(sha256)
    with file_lock(path), _fetch.tidy_dirs(os.path.dirname(path) or "."):
        if _trusted_existing(path, sha256):
            return path
        _makedirs(os.path.dirname(path))  # a replaced ``download`` may expect the folder
        return _fetch.download_verified(path, source_url, sha256, download=download, digest=compute_sha256,
                                        policy=_policy(), mirror=_mirror_note())


def download_and_verify(path: str, source_url: str, sha256: str | None) -> str | None:
    """Download ``source_url`` to ``path``, verify its SHA-256, and return ``path`` (``None`` on failure).

    An existing ``path`` is verified first and re-fetched if it is corrupt. A
    download goes to ``path + '.unverified'`` (through ``batchup.config.download``,
    looked up at call time) and is renamed into place only after its digest
    matched. Up to :data:`TRIES` attempts are made, with exponential backoff
    from :data:`BACKOFF` seconds (at most :data:`MAX_DELAY`), waiting longer
    when the server asks to with ``Retry-After``. Only what may pass is
    retried: connection errors, timeouts, truncated bodies, digest
    mismatches, HTTP 408, 429 and 5xx; any other HTTP error fails at once.
    Within a call, a later attempt resumes the bytes of an earlier one (an
    HTTP range request). The partial bytes of a download interrupted by
    Ctrl-C (or a killed process) are kept and resumed by the next call;
    after a failure nothing is left: no partial file, and no folder that
    this call created. Other processes fetching the same ``path`` wait for
    this one (:func:`file_lock`).

    Parameters
    ----------
    path : str
        Where the verified file goes.
    source_url : str
        An http or https URL.
    sha256 : str or None
        The expected digest (64 hex digits); ``None`` accepts any file and
        prints its digest so that it can be recorded.

    Returns
    -------
    str or None
        ``path``; or ``None`` after every attempt failed (the contract of
        BatchUp 0.2). Each failed attempt prints a line on stderr, and the
        final reason is printed as ``DownloadError: ...`` (URL, number of
        attempts, last failure with its HTTP status, mirror setting) or
        ``IntegrityError: ...`` (the file, expected and actual SHA-256, the
        mirror setting).

    Raises
    ------
    OSError
        If writing locally fails, e.g. a full disk (not retried).
    ValueError
        If ``sha256`` is not 64 hex digits or the URL is not http/https.
    ConfigError
        If the config file cannot be parsed.
    """
    try:
        return _download_and_verify(path, source_url, sha256)
    except (DownloadError, IntegrityError) as err:
        report_failure(err)
        return None


def _copy_and_verify(path: str, source_path: str, sha256: str | None) -> str | None:
    """:func:`copy_and_verify`, raising ``IntegrityError`` on a mismatch."""
    sha256 = check_sha256(sha256)
    with file_lock(path), _fetch.tidy_dirs(os.path.dirname(path) or "."):
        if _trusted_existing(path, sha256):
            return path
        if not os.path.exists(source_path):
            return None
        tmp = path + ".unverified"
        _makedirs(os.path.dirname(tmp))
        try:
            shutil.copy(source_path, tmp)
            actual = compute_sha256(tmp)
            if sha256 is not None and actual != sha256:
                raise _fetch.integrity_error(path, source_path, sha256, actual, _fetch.head(tmp), _mirror_note())
            if sha256 is None:
                _fetch.say(f"SHA-256 of {path} is {actual} (not checked: no digest given)")
            os.replace(tmp, path)
        finally:
            _fetch.remove(tmp)
        return path


def copy_and_verify(path: str, source_path: str, sha256: str | None) -> str | None:
    """Copy ``source_path`` to ``path``, verify it, and return ``path`` (``None`` on failure).

    An existing ``path`` is verified first. The copy is made with
    ``shutil.copy`` (looked up at call time) to ``path + '.unverified'`` and
    renamed after its digest matched; there is a single attempt.

    Parameters
    ----------
    path : str
        Where the verified copy goes.
    source_path : str
        The file to copy.
    sha256 : str or None
        The expected digest (64 hex digits); ``None`` accepts any file and
        prints its digest.

    Returns
    -------
    str or None
        ``path``; ``None`` without a word when ``source_path`` does not
        exist; ``None`` after a failed verification, which is printed as
        ``IntegrityError: ...`` (both digests) and leaves no copy behind.

    Raises
    ------
    OSError
        If copying fails for another reason (unreadable source, full disk).
    """
    try:
        return _copy_and_verify(path, source_path, sha256)
    except IntegrityError as err:
        report_failure(err)
        return None


def download_data(filename: str, source_url: str, sha256: str | None) -> str | None:
    """Download ``source_url`` into the data directory as ``filename``, verified (:func:`download_and_verify`).

    Parameters
    ----------
    filename : str
        The path relative to the data directory (see :func:`get_data_path`).
    source_url : str
        An http or https URL.
    sha256 : str or None
        The expected digest.

    Returns
    -------
    str or None
        The path, or ``None`` after printing why the file could not be had.
    """
    return download_and_verify(get_data_path(filename), source_url, sha256)


def copy_data(filename: str, source_path: str, sha256: str | None) -> str | None:
    """Copy ``source_path`` into the data directory as ``filename``, verified (:func:`copy_and_verify`).

    Parameters
    ----------
    filename : str
        The path relative to the data directory (see :func:`get_data_path`).
    source_path : str
        The file to copy.
    sha256 : str or None
        The expected digest.

    Returns
    -------
    str or None
        The path, or ``None`` (see :func:`copy_and_verify`).
    """
    return copy_and_verify(get_data_path(filename), source_path, sha256)
