"""Fetching a file to disk: resuming, verified attempts, progress, and leaving nothing behind.

The machinery behind :mod:`batchup.config`'s downloads, kept apart so that
``config`` holds only settings, paths, hashing and the public BatchUp 0.2
functions. The HTTP requests themselves, and the retry policy, are those of
:mod:`batchup._http`, which the URL record encoder uses too. Nothing here
reads the configuration: timeouts, the retry policy, the mirror setting and
the helpers to call (``download``, the digest function) are passed in by
``config`` at call time, which keeps its replaceable helpers
(``config.urlretrieve``, ``config.download``) and knobs (``config.TIMEOUT``,
``TRIES``, ``BACKOFF``, ``MAX_DELAY``) effective.

* :func:`http_get` fetches one URL in one try into ``<file>.part`` (resumed
  with an HTTP range request when a ``.part`` is already there) and renames
  the finished bytes to ``<file>``.
* :func:`download_verified` runs the attempts at one URL with the shared
  :class:`~batchup._http.RetryPolicy`, checks the SHA-256, renames into
  place and removes its temporary files (except the ``.part`` of a download
  interrupted with Ctrl-C or a killed process, which the next call resumes).
* :func:`sources_failed` is the error listing every URL of a file that
  could not be had from any of them, each with its reason.
* :func:`tidy_dirs` removes the folders a failed fetch created.
* :class:`Progress` turns the ``reporthook(count, block_size, total)``
  calls into a tqdm bar.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, Sequence

from batchup import _http
from batchup._errors import DownloadError, IntegrityError

__all__ = ["Progress", "download_verified", "fail", "http_get", "integrity_error", "remove", "say",
           "sources_failed", "tidy_dirs"]

_CHUNK = 1 << 20
fail = _http.fail


def say(message: str) -> None:
    """Print a progress or status line on stderr."""
    print(message, file=sys.stderr, flush=True)


def remove(*paths: str) -> None:
    """Delete the files ``paths``, ignoring those that do not exist."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(p)


@contextlib.contextmanager
def tidy_dirs(folder: str) -> Iterator[None]:
    """Remove, when the block ends, the folders on the way to ``folder`` that it created and left empty.

    Examples
    --------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> with tidy_dirs(os.path.join(root, "temp", "mnist")):
    ...     os.makedirs(os.path.join(root, "temp", "mnist"))
    >>> os.listdir(root)
    []
    >>> os.rmdir(root)
    """
    created = []
    d = os.path.abspath(folder)
    while not os.path.isdir(d):
        created.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    try:
        yield
    finally:
        for d in created:  # deepest first; stop at the first folder still in use
            try:
                os.rmdir(d)
            except FileNotFoundError:
                continue
            except OSError:
                break


def _open_part(part: str, mode: str) -> Any:
    try:
        return open(part, mode)  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:  # the folder went away (another process tidied it): make it again, once
        os.makedirs(os.path.dirname(part) or ".", exist_ok=True)
        return open(part, mode)  # noqa: SIM115


def http_get(url: str, filename: str, reporthook: Callable[[int, int, int], Any] | None,
             timeout: float) -> tuple[str, Any]:
    """Fetch ``url`` into ``filename`` in one try; see :func:`batchup.config.urlretrieve`.

    The bytes land in ``filename + '.part'``; a ``.part`` left by an earlier
    try is resumed with a range request (and restarted when the server
    ignores it). ``timeout`` bounds the connection and each read.
    """
    part = filename + ".part"
    start = os.path.getsize(part) if os.path.isfile(part) else 0
    try:
        resp = _http.open_url(url, timeout=timeout, headers={"Range": f"bytes={start}-"} if start else None)
    except DownloadError as err:
        if err.status == 416:  # our range no longer fits the file: start again next try
            remove(part)
        raise
    with resp:
        if resp.status == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            remove(part)
            got = resp.headers.get("Content-Range")
            raise fail(f"{url} answered the request for bytes {start}- with Content-Range {got!r}",
                       detail=f"answered a range request with Content-Range {got!r}")
        done = start if resp.status == 206 else 0
        length = resp.content_length
        total = done + length if length is not None else -1
        with _open_part(part, "ab" if done else "wb") as out:
            for block in resp.blocks(_CHUNK, offset=done):
                try:
                    out.write(block)
                except OSError as err:  # a local problem (disk full, quota): retrying will not help
                    raise OSError(err.errno, f"{err.strerror} while writing the download", part) from err
                done += len(block)
                if reporthook is not None:
                    reporthook(done, 1, total)
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
    err = IntegrityError(f"SHA-256 mismatch for {path} from {source}: expected {expected}, got {actual}. "
                         f"Mirror setting: {mirror}.{hint} If the source is right, delete the file and retry.")
    err.detail = f"SHA-256 mismatch: expected {expected}, got {actual}.{hint}"
    return err


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("s" if n != 1 else "")


def _retry_if(err: BaseException) -> bool:
    return isinstance(err, IntegrityError) or _http.retryable(err)


def download_verified(path: str, source_url: str, sha256: str | None, *, download: Callable[[str, str], Any],
                      digest: Callable[[str], str], policy: _http.RetryPolicy, mirror: str) -> str:
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
    policy : batchup._http.RetryPolicy
        At most ``policy.tries`` attempts, with its backoff (and a server's
        ``Retry-After``) in between. A digest mismatch is retried like a
        transient failure (BatchUp 0.2 did so too).
    mirror : str
        The mirror setting, quoted in the final error.

    Raises
    ------
    DownloadError
        After the last failed attempt, or after the first one for a failure
        that is not retried (HTTP 4xx other than 408/429, a refused
        redirect). The message names the URL, the number of attempts, the
        last failure and the mirror setting; ``status`` holds the last HTTP
        status, ``url``, ``attempts`` and ``detail`` the parts.
    IntegrityError
        If the last attempt produced a file with the wrong digest (the
        message adds the attempts to the mismatch details).
    OSError
        At once, for a local failure such as a full disk.
    """
    tmp = path + ".unverified"
    remove(tmp)  # a finished but unchecked file of a killed run; its ``.part`` is kept for resuming

    def attempt(k: int) -> str:
        download(tmp, source_url)
        if not os.path.isfile(tmp):
            raise fail(f"downloading {source_url} produced no file at {tmp}",
                       detail=f"the download produced no file at {tmp}")
        actual = digest(tmp)
        if sha256 is not None and actual != sha256:
            err = integrity_error(path, source_url, sha256, actual, head(tmp), mirror)
            remove(tmp, tmp + ".part")
            raise err
        if sha256 is None:
            say(f"SHA-256 of {path} is {actual} (not checked: no digest given)")
        os.replace(tmp, path)
        return path

    def report(k: int, err: BaseException, wait: float | None) -> None:
        then = f" (retrying in {wait:.3g} s)" if wait is not None else ""
        say(f"attempt {k} of {policy.tries} failed: {err}{then}")

    keep_part = False
    try:
        return _http.retry(attempt, policy, failures=(DownloadError, IntegrityError), retry_if=_retry_if,
                           on_failure=report)
    except _http.GaveUp as gave:
        last, note = gave.last, (f" ({gave.note})" if gave.note else "")
        gave_up = f"could not download {source_url} to {path} (gave up after {_attempts(gave.attempts)}{note})"
        final: DownloadError | IntegrityError
        if isinstance(last, IntegrityError):
            final = IntegrityError(f"{gave_up}: {last}")
        else:
            final = fail(f"{gave_up}: {last}. Mirror setting: {mirror}.", getattr(last, "status", None))
        final.url, final.attempts = source_url, gave.attempts
        final.detail = (getattr(last, "detail", None) or str(last)) + note
        raise final from last
    except (KeyboardInterrupt, SystemExit):
        keep_part = True  # interrupted by the user: the next call resumes from the partial bytes
        raise
    finally:
        remove(tmp)
        if not keep_part:
            remove(tmp + ".part")


def sources_failed(what: str, failures: Sequence[tuple[str, BaseException | None]], mirror: str) -> Exception:
    """Return the error for ``what`` that could be had from none of its URLs, listing each with its reason.

    ``failures`` holds ``(url, error)`` in the order the URLs were tried
    (``error`` ``None`` when no reason was reported). The result is an
    :class:`IntegrityError` when every URL gave a file with the wrong digest,
    else a :class:`DownloadError` whose ``status`` is the first HTTP status
    among the failures. Either has ``failures``.

    Examples
    --------
    >>> err = sources_failed("a.gz", [("https://a.example/a.gz", fail("HTTP 404 Not Found", 404)),
    ...                               ("http://b.example/a.gz", None)], "none")
    >>> print(err)
    could not download a.gz from any of its 2 URLs (tried in this order; mirror setting: none):
      1. https://a.example/a.gz: HTTP 404 Not Found
      2. http://b.example/a.gz: no reason was reported
    >>> err.status
    404
    """
    lines = []
    for i, (url, err) in enumerate(failures, 1):
        if err is None:
            why = "no reason was reported"
        else:
            why = getattr(err, "detail", None) or f"{type(err).__name__}: {err}"
            attempts = getattr(err, "attempts", None)
            if attempts:
                why += f" ({_attempts(attempts)})"
        lines.append(f"  {i}. {url}: {why}")
    message = (f"could not download {what} from any of its {len(failures)} URLs "
               f"(tried in this order; mirror setting: {mirror}):\n" + "\n".join(lines))
    errors = [e for _, e in failures if e is not None]
    result: Any
    if errors and all(isinstance(e, IntegrityError) for e in errors):
        result = IntegrityError(message)
    else:
        statuses = [getattr(e, "status", None) for e in errors]
        result = fail(message, next((s for s in statuses if s is not None), None))
    result.failures = list(failures)
    return result
