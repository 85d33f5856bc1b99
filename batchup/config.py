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
``<path>`` is verified before it is trusted. A lock file (``<path>.lock``)
lets one process fetch while others wait for its result.

``[download] mirror=`` in the config file, or ``$BATCHUP_MIRROR``, names a
base URL that replaces the official hosts (see :func:`mirror_url`).

The helpers of BatchUp 0.2 (``urlretrieve``, ``download``,
``get_batchup_path``, ``get_data_dir``) are looked up through this module at
call time, so they can be replaced, e.g. ``batchup.config.urlretrieve =
my_fetch``. Nothing happens at import: no directory is created and no file is
read until a function asks for it.
"""
from __future__ import annotations

import configparser
import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator

import batchup
from batchup._errors import (
    ArchiveError,
    ConfigError,
    DownloadError,
    IntegrityError,
    UnsafeArchiveError,
)

__all__ = [
    "ArchiveError", "ConfigError", "DownloadError", "IntegrityError", "UnsafeArchiveError",
    "compute_sha256", "copy_and_verify", "copy_data", "download", "download_and_verify", "download_data",
    "file_lock", "get_batchup_path", "get_config", "get_config_path", "get_data_dir", "get_data_path",
    "get_mirror", "mirror_url", "reset_config", "urlretrieve", "verify_file",
]

#: Environment variable naming the batchup home (wins over the config file).
HOME_ENV = "BATCHUP_HOME"
#: Environment variable naming a download mirror (wins over ``[download] mirror``).
MIRROR_ENV = "BATCHUP_MIRROR"
#: Seconds to wait for a connection, and for each read, before a try fails.
TIMEOUT = 30.0
#: Download attempts before :func:`download_and_verify` gives up.
TRIES = 3
#: Seconds before the second attempt; doubles for each further attempt.
BACKOFF = 1.0
_CHUNK = 1 << 20
_config_cache: dict[str, configparser.RawConfigParser] = {}


class BatchupHomeError(NotADirectoryError, RuntimeError):
    """The batchup home exists but is not a directory.

    Also a ``RuntimeError``, the type BatchUp 0.2 raised here.
    """


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- configuration -------------------------------------------------------------------------------------

def get_config_path() -> str:
    """Return the path of the config file, ``~/.batchup.cfg`` (expanded at each call)."""
    return os.path.expanduser(os.path.join("~", ".batchup.cfg"))


def get_config() -> configparser.RawConfigParser:
    """Return the parsed config file (an empty parser when there is none).

    The result is cached per file path until :func:`reset_config`.

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
    """Return ``<batchup home>/data`` (not created here)."""
    return os.path.join(get_batchup_path(), "data")


def get_data_path(filename: str) -> str:
    """Return the path of ``filename`` inside the batchup data directory.

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

    Raises
    ------
    ConfigError
        If the mirror is not an ``http``/``https`` URL.
    """
    mirror = os.environ.get(MIRROR_ENV) or _config_value("download", "mirror")
    if mirror is not None and urllib.parse.urlsplit(mirror).scheme not in ("http", "https"):
        raise ConfigError(f"the download mirror must be an http or https URL, got {mirror!r}")
    return mirror


def mirror_url(url: str, subdir: str | None = None) -> str:
    """Return where to fetch ``url`` from: itself, or its file name under the mirror.

    With a mirror ``M`` set, ``http://host/a/b/file.gz`` becomes
    ``M/<subdir>/file.gz`` (``M/file.gz`` without ``subdir``).

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


# -- hashing and locking -------------------------------------------------------------------------------

def compute_sha256(path: str) -> str:
    """Return the lowercase hex SHA-256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str, sha256: str | None) -> bool:
    """Return whether ``path`` is a regular file with the digest ``sha256``.

    With ``sha256=None`` the file's digest is printed (so it can be recorded)
    and the file is accepted.
    """
    if not os.path.isfile(path):
        return False
    actual = compute_sha256(path)
    if sha256 is None:
        _say(f"SHA-256 of {path} is {actual}")
        return True
    return actual == sha256.lower()


def check_sha256(sha256: Any, name: str = "sha256") -> str | None:
    """Return ``sha256`` lower-cased; raise ValueError unless it is ``None`` or 64 hex digits."""
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256):
        raise ValueError(f"{name} must be None or a string of 64 hex digits, got {sha256!r}")
    return sha256.lower()


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``<path>.lock`` for the ``with`` block.

    The lock dies with its process (``flock``), so a killed fetch never blocks
    the next one. The lock file is removed on release.
    """
    lock_path = path + ".lock"
    os.makedirs(os.path.dirname(lock_path) or ".", exist_ok=True)
    fcntl: Any
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: a best-effort lock
        fcntl = None
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f"waiting for another process to finish with {path}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # the holder we waited for may have removed the file: lock the current one
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


def _remove(*paths: str) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(p)


def _trusted_existing(path: str, sha256: str | None) -> bool:
    """Return whether a file already at ``path`` can be used; remove it if it fails verification."""
    if not os.path.isfile(path):
        return False
    if verify_file(path, sha256):
        return True
    _say(f"{path} is corrupt (SHA-256 mismatch); fetching it again")
    _remove(path)
    return False


# -- HTTP -----------------------------------------------------------------------------------------------

class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl)).scheme
        if scheme not in ("http", "https"):
            err = DownloadError(f"refusing the HTTP {code} redirect from {req.full_url} to {newurl!r} "
                                f"(only http and https are followed)")
            err.status = code
            raise err
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fail(message: str, status: int | None = None) -> DownloadError:
    err = DownloadError(message)
    err.status = status
    return err


def _retryable(err: DownloadError) -> bool:
    status = getattr(err, "status", None)
    return status is None or status >= 500 or status in (408, 429)


def urlretrieve(url: str, filename: str, reporthook: Callable[[int, int, int], Any] | None = None,
                *, timeout: float | None = None) -> tuple[str, Any]:
    """Fetch ``url`` into ``filename`` in one try; the bytes land in ``filename + '.part'`` first.

    A ``.part`` left by an interrupted try is resumed with an HTTP range
    request (restarted when the server ignores it). ``reporthook`` is called
    as ``hook(bytes_so_far, 1, total_bytes)``, ``total_bytes`` being ``-1``
    when unknown. Returns ``(filename, headers)`` like
    :func:`urllib.request.urlretrieve`.

    Raises
    ------
    DownloadError
        For an HTTP error status (``.status`` holds it), a refused or timed-out
        connection, a body shorter than its ``Content-Length``, or a redirect
        to a scheme other than http/https.
    OSError
        If writing the local file fails (e.g. the disk is full).
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url must use the http or https scheme, got {url!r}")
    part = filename + ".part"
    start = os.path.getsize(part) if os.path.isfile(part) else 0
    headers = {"User-Agent": f"batchup/{batchup.__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout or TIMEOUT)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416:  # our range no longer fits the file: start again next try
            _remove(part)
        raise _fail(f"HTTP {err.code} {err.reason} for {url}", err.code) from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        if isinstance(err, DownloadError):
            raise
        reason = getattr(err, "reason", err)
        raise _fail(f"could not connect to {url}: {reason}") from err
    with resp:
        resumed = resp.status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {start}-")
        done = start if resumed else 0
        length = resp.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else -1
        with open(part, "ab" if resumed else "wb") as out:
            while True:
                try:
                    block = resp.read1(_CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    got = f"got {done} of {total} bytes" if total >= 0 else f"after {done} bytes"
                    raise _fail(f"connection to {url} failed: {got} ({type(err).__name__}: {err})") from err
                if not block:
                    break
                try:
                    out.write(block)
                except OSError as err:  # a local problem (disk full, quota): retrying will not help
                    raise OSError(err.errno, f"{err.strerror} while writing the download", part) from err
                done += len(block)
                if reporthook is not None:
                    reporthook(done, 1, total)
        if total >= 0 and done < total:
            raise _fail(f"connection to {url} closed early: got {done} of {total} bytes")
        os.replace(part, filename)
        return filename, resp.headers


class _Progress:
    """A tqdm bar driven by a ``hook(count, block_size, total_size)`` reporthook."""

    def __init__(self, desc: str) -> None:
        self.desc, self.shown = desc, 0
        self.bar: Any = None

    def hook(self, count: int, block_size: int, total_size: int) -> None:
        if self.bar is None:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is a dependency, but stay quiet without it
                return
            self.bar = tqdm(total=total_size if total_size > 0 else None, unit="B", unit_scale=True,
                            unit_divisor=1024, desc=self.desc, leave=False)
        now = count * block_size
        self.bar.update(now - self.shown)
        self.shown = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def download(path: str, source_url: str) -> str:
    """Download ``source_url`` to ``path`` (no verification) and return ``path``.

    An existing ``path`` is returned at once. Progress is shown with tqdm.
    Uses ``batchup.config.urlretrieve`` (replaceable). On any error the file
    at ``path`` is removed and the error propagates.
    """
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if os.path.exists(path):
        return path
    _say(f"Downloading {source_url} to {path}")
    progress = _Progress(os.path.basename(path))
    try:
        urlretrieve(source_url, path, reporthook=progress.hook)
    except BaseException:
        _remove(path)
        raise
    finally:
        progress.close()
    return path


def _mismatch(path: str, source: str, expected: str, actual: str, sample: bytes = b"") -> IntegrityError:
    try:
        mirror = get_mirror() or "none (official URLs)"
    except Exception:  # noqa: BLE001 - a bad mirror setting must not hide the mismatch
        mirror = "unreadable"
    hint = ""
    if sample.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")):
        hint = " The server sent an HTML page instead of the file (an error or login page?)."
    return IntegrityError(f"SHA-256 mismatch for {path} from {source}: expected {expected}, got {actual}. "
                          f"Mirror setting: {mirror}.{hint} If the source is right, delete the file and retry.")


def _head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(64)


def download_and_verify(path: str, source_url: str, sha256: str | None) -> str:
    """Download ``source_url`` to ``path`` and verify its SHA-256; return ``path``.

    An existing ``path`` is verified first and re-fetched if it is corrupt. A
    download goes to ``path + '.unverified'`` and is renamed into place only
    after its digest matched. Up to :data:`TRIES` attempts are made, with
    exponential backoff; HTTP 4xx errors are not retried. The partial bytes
    of a download interrupted by Ctrl-C (or a killed process) are resumed by
    the next call; after a failure they are deleted. Other processes
    fetching the same ``path`` wait for this one (:func:`file_lock`).

    Raises
    ------
    DownloadError
        After the last failed attempt (the message names the URL and the
        number of attempts), or at once for an HTTP 4xx status.
    IntegrityError
        If the last attempt produced a file with the wrong digest.
    OSError
        If writing locally fails (not retried).
    """
    sha256 = check_sha256(sha256)
    with file_lock(path):
        if _trusted_existing(path, sha256):
            return path
        tmp = path + ".unverified"
        _remove(tmp)  # a finished but unchecked file of a killed run; its ``.part`` is kept for resuming
        last: Exception | None = None
        attempt = 0
        keep_part = False
        try:
            for attempt in range(1, TRIES + 1):
                if attempt > 1:
                    time.sleep(BACKOFF * 2 ** (attempt - 2))
                try:
                    download(tmp, source_url)
                except DownloadError as err:
                    last = err
                    _say(f"attempt {attempt} of {TRIES} failed: {err}")
                    if not _retryable(err):
                        break
                    continue
                if not os.path.isfile(tmp):
                    last = _fail(f"downloading {source_url} produced no file at {tmp}")
                    continue
                actual = compute_sha256(tmp)
                if sha256 is None or actual == sha256:
                    if sha256 is None:
                        _say(f"SHA-256 of {path} is {actual} (not checked: no digest given)")
                    os.replace(tmp, path)
                    return path
                last = _mismatch(path, source_url, sha256, actual, _head(tmp))
                _say(f"attempt {attempt} of {TRIES}: {last}")
                _remove(tmp, tmp + ".part")
        except (KeyboardInterrupt, SystemExit):
            keep_part = True  # interrupted by the user: the next call resumes from the partial bytes
            raise
        finally:
            _remove(tmp)
            if not keep_part:
                _remove(tmp + ".part")
        if isinstance(last, IntegrityError):
            raise last
        tries = f"{attempt} attempt" + ("s" if attempt != 1 else "")
        raise _fail(f"could not download {source_url} to {path} (gave up after {tries}): {last}",
                    getattr(last, "status", None)) from last


def copy_and_verify(path: str, source_path: str, sha256: str | None) -> str | None:
    """Copy ``source_path`` to ``path``, verify it, and return ``path``.

    Returns ``None`` when ``source_path`` does not exist. An existing
    ``path`` is verified first. The copy is made with ``shutil.copy`` (looked
    up at call time) to ``path + '.unverified'`` and renamed after it matched.

    Raises
    ------
    IntegrityError
        If the copy's digest differs from ``sha256`` (the copy is removed).
    """
    sha256 = check_sha256(sha256)
    with file_lock(path):
        if _trusted_existing(path, sha256):
            return path
        if not os.path.exists(source_path):
            return None
        tmp = path + ".unverified"
        try:
            shutil.copy(source_path, tmp)
            actual = compute_sha256(tmp)
            if sha256 is not None and actual != sha256:
                raise _mismatch(path, source_path, sha256, actual, _head(tmp))
            if sha256 is None:
                _say(f"SHA-256 of {path} is {actual} (not checked: no digest given)")
            os.replace(tmp, path)
        finally:
            _remove(tmp)
        return path


def download_data(filename: str, source_url: str, sha256: str | None) -> str:
    """:func:`download_and_verify` into ``get_data_path(filename)``."""
    return download_and_verify(get_data_path(filename), source_url, sha256)


def copy_data(filename: str, source_path: str, sha256: str | None) -> str | None:
    """:func:`copy_and_verify` into ``get_data_path(filename)``."""
    return copy_and_verify(get_data_path(filename), source_path, sha256)
