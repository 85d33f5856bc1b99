"""Fetching a file over HTTP(S): timeouts, resuming, retries with backoff, progress.

The machinery behind :mod:`batchup.config`'s downloads, kept apart so that
``config`` holds only settings, paths, hashing and the public BatchUp 0.2
functions. Nothing here reads the configuration: timeouts, attempt counts,
the mirror setting and the helpers to call (``download``, the digest
function) are passed in by ``config`` at call time, which keeps its
replaceable helpers (``config.urlretrieve``, ``config.download``) and knobs
(``config.TIMEOUT``, ``TRIES``, ``BACKOFF``) effective.

* :func:`http_get` fetches one URL in one try into ``<file>.part`` (resumed
  with an HTTP range request when a ``.part`` is already there), refuses
  redirects to schemes other than http/https, and renames the finished
  bytes to ``<file>``.
* :func:`download_verified` runs the attempts: backoff between them, no
  retry after an HTTP 4xx, SHA-256 check, rename into place, clean-up of
  temporary files (except the ``.part`` of a download interrupted with
  Ctrl-C, which the next call resumes).
* :class:`Progress` turns the ``reporthook(count, block_size, total)``
  calls into a tqdm bar.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

import batchup
from batchup._errors import DownloadError, IntegrityError

__all__ = ["Progress", "download_verified", "fail", "http_get", "integrity_error", "remove", "retryable", "say"]

_CHUNK = 1 << 20


def say(message: str) -> None:
    """Print a progress or status line on stderr."""
    print(message, file=sys.stderr, flush=True)


def remove(*paths: str) -> None:
    """Delete the files ``paths``, ignoring those that do not exist."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(p)


def fail(message: str, status: int | None = None) -> DownloadError:
    """Return a :class:`DownloadError` with ``message`` and the HTTP ``status`` (or ``None``)."""
    err = DownloadError(message)
    err.status = status
    return err


def retryable(err: DownloadError) -> bool:
    """Return whether another attempt may succeed: no status, 5xx, 408 or 429."""
    status = getattr(err, "status", None)
    return status is None or status >= 500 or status in (408, 429)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl)).scheme
        if scheme not in ("http", "https"):
            raise fail(f"refusing the HTTP {code} redirect from {req.full_url} to {newurl!r} "
                       f"(only http and https are followed)", code)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def http_get(url: str, filename: str, reporthook: Callable[[int, int, int], Any] | None,
             timeout: float) -> tuple[str, Any]:
    """Fetch ``url`` into ``filename`` in one try; see :func:`batchup.config.urlretrieve`.

    The bytes land in ``filename + '.part'``; a ``.part`` left by an earlier
    try is resumed with a range request (and restarted when the server
    ignores it). ``timeout`` bounds the connection and each read.
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
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416:  # our range no longer fits the file: start again next try
            remove(part)
        raise fail(f"HTTP {err.code} {err.reason} for {url}", err.code) from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        if isinstance(err, DownloadError):
            raise
        reason = getattr(err, "reason", err)
        raise fail(f"could not connect to {url}: {reason}") from err
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
                    raise fail(f"connection to {url} failed: {got} ({type(err).__name__}: {err})") from err
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
            raise fail(f"connection to {url} closed early: got {done} of {total} bytes")
        os.replace(part, filename)
        return filename, resp.headers


class Progress:
    """A tqdm bar driven by a ``hook(count, block_size, total_size)`` reporthook."""

    def __init__(self, desc: str) -> None:
        self.desc, self.shown = desc, 0
        self.bar: Any = None

    def hook(self, count: int, block_size: int, total_size: int) -> None:
        """Advance the bar to ``count * block_size`` bytes (``total_size <= 0``: unknown)."""
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
        """Close the bar, if one was shown."""
        if self.bar is not None:
            self.bar.close()


def head(path: str) -> bytes:
    """Return the first 64 bytes of ``path`` (to recognise an HTML page)."""
    with open(path, "rb") as f:
        return f.read(64)


def integrity_error(path: str, source: str, expected: str, actual: str, sample: bytes, mirror: str) -> IntegrityError:
    """Return the :class:`IntegrityError` for a digest mismatch of ``path`` fetched from ``source``.

    The message names the file, the source, both digests and the mirror
    setting, and says so when ``sample`` (the file's first bytes) is HTML.
    """
    hint = ""
    if sample.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")):
        hint = " The server sent an HTML page instead of the file (an error or login page?)."
    return IntegrityError(f"SHA-256 mismatch for {path} from {source}: expected {expected}, got {actual}. "
                          f"Mirror setting: {mirror}.{hint} If the source is right, delete the file and retry.")


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("s" if n != 1 else "")


def download_verified(path: str, source_url: str, sha256: str | None, *, download: Callable[[str, str], Any],
                      digest: Callable[[str], str], tries: int, backoff: float, mirror: str) -> str:
    """Download ``source_url`` to ``path`` through ``path + '.unverified'``, verified; return ``path``.

    Parameters
    ----------
    path : str
        The final file (the caller holds its lock and has checked it is absent).
    source_url : str
        Where to fetch from.
    sha256 : str or None
        The expected lowercase digest; ``None`` accepts any file and prints its digest.
    download : callable
        ``download(tmp_path, url)`` fetches one attempt (``batchup.config.download``).
    digest : callable
        ``digest(path) -> str`` (``batchup.config.compute_sha256``).
    tries, backoff : int, float
        At most ``tries`` attempts; ``backoff * 2**k`` seconds before attempt ``k + 2``.
    mirror : str
        The mirror setting, quoted in the final error.

    Raises
    ------
    DownloadError
        After the last failed attempt, or after the first one for an HTTP
        4xx status (other than 408/429). The message names the URL, the
        number of attempts, the last failure and the mirror setting;
        ``status`` holds the last HTTP status.
    IntegrityError
        If the last attempt produced a file with the wrong digest (the
        message adds the attempts to the mismatch details).
    OSError
        At once, for a local failure such as a full disk.
    """
    tmp = path + ".unverified"
    remove(tmp)  # a finished but unchecked file of a killed run; its ``.part`` is kept for resuming
    last: Exception | None = None
    attempt = 0
    keep_part = False
    try:
        for attempt in range(1, tries + 1):
            if attempt > 1:
                time.sleep(backoff * 2 ** (attempt - 2))
            try:
                download(tmp, source_url)
            except DownloadError as err:
                last = err
                say(f"attempt {attempt} of {tries} failed: {err}")
                if not retryable(err):
                    break
                continue
            if not os.path.isfile(tmp):
                last = fail(f"downloading {source_url} produced no file at {tmp}")
                continue
            actual = digest(tmp)
            if sha256 is None or actual == sha256:
                if sha256 is None:
                    say(f"SHA-256 of {path} is {actual} (not checked: no digest given)")
                os.replace(tmp, path)
                return path
            last = integrity_error(path, source_url, sha256, actual, head(tmp), mirror)
            say(f"attempt {attempt} of {tries}: {last}")
            remove(tmp, tmp + ".part")
    except (KeyboardInterrupt, SystemExit):
        keep_part = True  # interrupted by the user: the next call resumes from the partial bytes
        raise
    finally:
        remove(tmp)
        if not keep_part:
            remove(tmp + ".part")
    gave_up = f"could not download {source_url} to {path} (gave up after {_attempts(attempt)})"
    if isinstance(last, IntegrityError):
        raise IntegrityError(f"{gave_up}: {last}") from last
    raise fail(f"{gave_up}: {last}. Mirror setting: {mirror}.", getattr(last, "status", None)) from last
