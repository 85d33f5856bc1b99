"""batchup's one HTTP client: kept-alive connections, one retry policy, redirects, proxies.

Everything batchup fetches over HTTP goes through this module: the dataset
downloads (:mod:`batchup._fetch` behind :mod:`batchup.config`) and the URL
record encoder (:mod:`batchup.records.urls`). It is built on the standard
library's :mod:`http.client`, so it needs no extra package.

* :func:`open_url` makes one GET request on a pooled keep-alive connection
  (:class:`ConnectionPool`; one idle connection is reused per host instead of
  a new TCP and TLS handshake per file), follows redirects to http and https
  only, honours the ``http_proxy``/``https_proxy``/``no_proxy`` environment
  variables as :mod:`urllib.request` does, and turns every failure into a
  :class:`~batchup.config.DownloadError` that says whether another attempt
  may help (:func:`retryable`).
* :class:`RetryPolicy` and :func:`retry` are the one retry policy: bounded
  exponential backoff, a server's ``Retry-After`` (seconds or an HTTP date)
  honoured as the least wait, and retries only for what can pass: connection
  errors and timeouts, truncated bodies, HTTP 408, 429 and 5xx.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import email.utils
import http.client
import os
import ssl
import threading
import time
import urllib.parse
import urllib.request
import weakref
from typing import Any, Callable, Iterator, TypeVar

import batchup
from batchup._errors import DownloadError

__all__ = [
    "POOL", "ConnectionPool", "GaveUp", "Response", "RetryPolicy", "fail", "get_bytes", "open_url",
    "parse_retry_after", "retry", "retryable",
]

T = TypeVar("T")

#: Redirect statuses that are followed (with a GET) when they carry a ``Location``.
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Redirects followed before a request fails.
MAX_REDIRECTS = 10
#: The longest wait between two attempts, in seconds; a ``Retry-After`` asking for more ends the retries.
MAX_DELAY = 60.0
#: Bytes of an error or redirect body read to keep the connection reusable; a longer body closes it.
_DRAIN_LIMIT = 1 << 16

#: How :func:`retry` waits; replaceable (tests record the delays instead of sleeping).
sleep: Callable[[float], Any] = time.sleep


# -- errors and the retry policy ----------------------------------------------------------------------

def fail(message: str, status: int | None = None, *, retry_after: float | None = None,
         retryable: bool | None = None, detail: str | None = None) -> DownloadError:
    """Return a :class:`DownloadError` carrying ``status``, ``retry_after``, ``retryable`` and ``detail``.

    ``retryable=None`` lets :func:`retryable` decide from the status;
    ``detail`` is the reason without the URL (for a list of failed URLs).
    """
    err = DownloadError(message)
    err.status = status
    err.retry_after = retry_after
    err.detail = detail or message
    if retryable is not None:
        err.retryable = retryable
    return err


def retryable(err: BaseException) -> bool:
    """Return whether another attempt may succeed after ``err``.

    An explicit ``err.retryable`` wins; otherwise a failure without an HTTP
    status (a refused or dropped connection, a timeout, a truncated body) and
    HTTP 408, 429 and 5xx may pass on a later attempt, and every other status
    (404, 403, a refused redirect) will not.

    Examples
    --------
    >>> retryable(fail("HTTP 503 Service Unavailable", 503)), retryable(fail("HTTP 404 Not Found", 404))
    (True, False)
    >>> retryable(fail("could not connect: [Errno 111] Connection refused"))
    True
    """
    explicit = getattr(err, "retryable", None)
    if explicit is not None:
        return bool(explicit)
    status = getattr(err, "status", None)
    return status is None or status >= 500 or status in (408, 429)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks to wait, or ``None`` if absent or unreadable.

    The header is either a number of seconds or an HTTP date; a date in the
    past means 0.

    Examples
    --------
    >>> parse_retry_after("120"), parse_retry_after(None), parse_retry_after("soon")
    (120.0, None, None)
    >>> parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=784111777.0 - 30)
    30.0
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often to try, and how long to wait in between.

    Parameters
    ----------
    tries : int, default 3
        Attempts in all (at least 1).
    backoff : float, default 1.0
        Seconds before the second attempt; doubled before each further one.
    max_delay : float, default 60.0
        The longest wait. The exponential backoff is capped at it, and a
        server whose ``Retry-After`` asks for longer ends the retries at once
        (the caller can try another source instead of waiting).

    Examples
    --------
    >>> policy = RetryPolicy(tries=4, backoff=0.5, max_delay=1.5)
    >>> [policy.delay(k) for k in (1, 2, 3)]
    [0.5, 1.0, 1.5]
    >>> policy.delay(1, retry_after=1.2), policy.delay(1, retry_after=120.0)
    (1.2, None)
    """

    tries: int = 3
    backoff: float = 1.0
    max_delay: float = MAX_DELAY

    def __post_init__(self) -> None:
        if isinstance(self.tries, bool) or not isinstance(self.tries, int) or self.tries < 1:
            raise ValueError(f"tries must be an int >= 1, got {self.tries!r}")
        for name in ("backoff", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")

    def delay(self, failed: int, retry_after: float | None = None) -> float | None:
        """Return the seconds to wait after attempt ``failed`` (1-based), or ``None`` to stop retrying.

        The wait is ``backoff * 2**(failed - 1)`` capped at ``max_delay``, or
        the server's ``retry_after`` when that is longer; ``None`` when
        ``retry_after`` exceeds ``max_delay``.
        """
        wait = min(self.backoff * 2.0 ** (failed - 1), self.max_delay)
        if retry_after is not None:
            if retry_after > self.max_delay:
                return None
            wait = max(wait, retry_after)
        return wait


class GaveUp(Exception):
    """Raised by :func:`retry` when it stops: ``last`` is the last failure, ``attempts`` the attempts made.

    ``note`` says why it stopped early, if it did (empty otherwise).
    """

    def __init__(self, last: BaseException, attempts: int, note: str = "") -> None:
        super().__init__(f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}: {last}")
        self.last, self.attempts, self.note = last, attempts, note


def retry(attempt: Callable[[int], T], policy: RetryPolicy, *,
          failures: tuple[type[BaseException], ...] = (DownloadError,),
          retry_if: Callable[[BaseException], bool] = retryable,
          on_failure: Callable[[int, BaseException, float | None], Any] | None = None) -> T:
    """Return ``attempt(k)`` for the first attempt ``k`` (1-based) that does not raise one of ``failures``.

    After a failure that ``retry_if`` accepts, waits ``policy.delay(k,
    err.retry_after)`` (through :data:`sleep`) and tries again, at most
    ``policy.tries`` times in all. ``on_failure(k, err, wait)`` is called
    after each failed attempt (``wait`` is ``None`` when no retry follows).
    Exceptions not in ``failures`` propagate at once.

    Raises
    ------
    GaveUp
        After a failure that is not retried, or after the last attempt.

    Examples
    --------
    >>> calls = []
    >>> def flaky(k):
    ...     calls.append(k)
    ...     if k < 3:
    ...         raise fail("HTTP 503 Service Unavailable", 503)
    ...     return "body"
    >>> retry(flaky, RetryPolicy(tries=3, backoff=0.0)), calls
    ('body', [1, 2, 3])
    """
    for k in range(1, policy.tries + 1):
        try:
            return attempt(k)
        except failures as err:
            note = ""
            wait: float | None = None
            if retry_if(err) and k < policy.tries:
                retry_after = getattr(err, "retry_after", None)
                wait = policy.delay(k, retry_after)
                if wait is None:
                    note = (f"the server asked to wait {retry_after:.0f} s before retrying, "
                            f"more than the {policy.max_delay:.0f} s limit")
            if on_failure is not None:
                on_failure(k, err, wait)
            if wait is None:
                raise GaveUp(err, k, note) from err
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


# -- connections ------------------------------------------------------------------------------------------

_Key = tuple[str, str, int, str]
_ssl_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


class ConnectionPool:
    """Idle keep-alive connections, at most ``max_idle`` per (scheme, host, port, proxy).

    A connection is taken out while one request uses it, so threads never
    share one; a finished response puts it back. A forked child starts with
    an empty pool (it never writes on its parent's sockets).
    """

    def __init__(self, max_idle: int = 4) -> None:
        self.max_idle = max_idle
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        _POOLS.add(self)

    def take(self, key: _Key, make: Callable[[], http.client.HTTPConnection]) -> tuple[http.client.HTTPConnection, bool]:
        """Return an idle connection for ``key`` and ``True``, or ``make()`` and ``False``."""
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        return make(), False

    def put(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        """Keep ``conn`` for the next request to ``key`` (closed if ``max_idle`` are kept already)."""
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()

    def clear(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:  # closes the child's copy of the descriptor only
                conn.close()


_POOLS: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


def _reset_pools_in_child() -> None:
    for pool in list(_POOLS):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pools_in_child)

#: The pool every request uses unless it is given another.
POOL = ConnectionPool()


def _route(url: str) -> tuple[_Key, Callable[[], http.client.HTTPConnection], str, dict[str, str]]:
    """Return (pool key, connection factory, request target, extra headers) for ``url``."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"url must use the http or https scheme, got {url!r}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as err:
        raise ValueError(f"url has a bad port: {url!r} ({err})") from None
    if not host:
        raise ValueError(f"url has no host: {url!r}")
    port = port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = None if urllib.request.proxy_bypass(host) else urllib.request.getproxies().get(scheme)
    if not proxy:
        if scheme == "https":
            return (scheme, host, port, ""), lambda: http.client.HTTPSConnection(host, port, context=_tls()), target, {}
        return (scheme, host, port, ""), lambda: http.client.HTTPConnection(host, port), target, {}
    p = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    phost, pport = p.hostname or "", p.port or (443 if p.scheme == "https" else 80)
    auth = {}
    if p.username is not None:
        token = f"{urllib.parse.unquote(p.username)}:{urllib.parse.unquote(p.password or '')}"
        auth = {"Proxy-Authorization": "Basic " + base64.b64encode(token.encode()).decode("ascii")}
    pclass = http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
    if scheme == "http":  # plain HTTP through the proxy: absolute-form request target
        return (scheme, host, port, proxy), lambda: pclass(phost, pport), url, auth

    def tunnel() -> http.client.HTTPConnection:
        conn = http.client.HTTPSConnection(phost, pport, context=_tls())
        conn.set_tunnel(host, port, headers=auth)
        return conn

    return (scheme, host, port, proxy), tunnel, target, {}


#: Errors of a reused connection that the server closed while it sat idle: resent once on a new one.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def _transport_error(url: str, err: BaseException) -> DownloadError:
    """A failed connection or request: retryable, except a certificate that does not verify."""
    reason = str(err) or ("timed out" if isinstance(err, TimeoutError) else type(err).__name__)
    return fail(f"could not connect to {url}: {reason}", retryable=not isinstance(err, ssl.SSLCertVerificationError),
                detail=f"could not connect: {reason}")


class Response:
    """The answer to :func:`open_url`: status, headers, the final URL and the body, read in blocks.

    Use it as a context manager (or call :meth:`close`): a body read to the
    end gives the connection back to the pool; otherwise it is closed.
    """

    def __init__(self, raw: http.client.HTTPResponse, conn: http.client.HTTPConnection | None,
                 key: _Key, pool: ConnectionPool, url: str) -> None:
        self.raw, self._conn, self._key, self._pool, self.url = raw, conn, key, pool, url
        self.status: int = raw.status
        self.reason: str = raw.reason
        self.headers = raw.headers

    @property
    def content_length(self) -> int | None:
        """The announced body length, or ``None`` when the server did not give one."""
        value = self.headers.get("Content-Length", "")
        return int(value) if value.strip().isdigit() else None

    def _complete(self) -> bool:
        return self.raw.isclosed() or (not self.raw.chunked and self.raw.length == 0)

    def blocks(self, size: int = 1 << 20, *, offset: int = 0) -> Iterator[bytes]:
        """Yield the body in blocks of at most ``size`` bytes, as they arrive.

        Raises a retryable :class:`DownloadError` ("got X of Y bytes") when
        the connection fails, times out or closes before ``Content-Length``
        bytes arrived; ``offset`` (bytes already held from an earlier try) is
        added to both counts in that message.
        """
        length = self.content_length
        done = 0
        while True:
            try:
                block = self.raw.read1(size)
            except (OSError, http.client.HTTPException) as err:
                got = (f"got {offset + done} of {offset + length} bytes" if length is not None
                       else f"after {offset + done} bytes")
                why = "timed out" if isinstance(err, TimeoutError) and not str(err) else f"{type(err).__name__}: {err}"
                raise fail(f"connection to {self.url} failed: {got} ({why})",
                           detail=f"connection failed: {got} ({why})") from err
            if not block:
                break
            done += len(block)
            yield block
        if length is not None and done < length:
            got = f"got {offset + done} of {offset + length} bytes"
            raise fail(f"connection to {self.url} closed early: {got}", detail=f"connection closed early: {got}")

    def read(self) -> bytes:
        """Return the whole body (see :meth:`blocks` for the errors)."""
        return b"".join(self.blocks())

    def discard(self) -> None:
        """Read and drop a short body (an error page), then :meth:`close`."""
        length = self.content_length
        if length is not None and length <= _DRAIN_LIMIT:
            try:
                for _ in self.blocks(_DRAIN_LIMIT):
                    pass
            except DownloadError:
                pass
        self.close()

    def close(self) -> None:
        """Give the connection back to the pool if the body was read to the end, else close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        reusable = self._complete() and not self.raw.will_close
        self.raw.close()
        if reusable:
            self._pool.put(self._key, conn)
        else:
            conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _request(url: str, headers: dict[str, str], timeout: float, pool: ConnectionPool) -> Response:
    key, make, target, extra = _route(url)
    for _ in range(2):
        conn, reused = pool.take(key, make)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request("GET", target, headers={**extra, **headers})
            raw = conn.getresponse()
        except _STALE as err:
            conn.close()
            if reused:
                continue  # the server dropped the idle connection: send again on a new one
            raise _transport_error(url, err) from err
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise _transport_error(url, err) from err
        return Response(raw, conn, key, pool, url)
    raise AssertionError("unreachable")  # pragma: no cover


def open_url(url: str, *, timeout: float, headers: dict[str, str] | None = None,
             pool: ConnectionPool | None = None) -> Response:
    """Send a GET for ``url`` and return the :class:`Response` (status 2xx), redirects followed.

    ``timeout`` bounds the connection and every read. Redirects are followed
    to http and https URLs only, at most :data:`MAX_REDIRECTS` times.

    Raises
    ------
    DownloadError
        For an error status (``status`` holds it; ``retry_after`` holds a
        parsed ``Retry-After``), a refused redirect, a redirect loop, or a
        connection that failed or timed out (``status`` ``None``).
        :func:`retryable` says whether another attempt may help.
    ValueError
        If ``url`` is not an http or https URL with a host.
    """
    pool = POOL if pool is None else pool
    sent = {"User-Agent": f"batchup/{batchup.__version__}", "Accept": "*/*", **(headers or {})}
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        resp = _request(current, sent, timeout, pool)
        location = resp.headers.get("Location")
        if resp.status in REDIRECTS and location:
            resp.discard()
            target = urllib.parse.urljoin(current, location)
            if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
                only = "(only http and https are followed)"
                raise fail(f"refusing the HTTP {resp.status} redirect from {current} to {location!r} {only}",
                           resp.status, retryable=False,
                           detail=f"refused the HTTP {resp.status} redirect to {location!r} {only}")
            current = target
            continue
        if resp.status >= 300:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            resp.discard()
            raise fail(f"HTTP {resp.status} {resp.reason} for {current}", resp.status, retry_after=retry_after,
                       detail=f"HTTP {resp.status} {resp.reason}" + (f" from {current}" if current != url else ""))
        return resp
    raise fail(f"more than {MAX_REDIRECTS} redirects starting at {url} (a redirect loop?)", resp.status,
               retryable=False, detail=f"more than {MAX_REDIRECTS} redirects (a redirect loop?)")


def get_bytes(url: str, *, timeout: float, pool: ConnectionPool | None = None) -> bytes:
    """Return the body of ``url`` in one attempt (see :func:`open_url` for the errors).

    A body shorter than its ``Content-Length`` is a retryable :class:`DownloadError`.
    """
    with open_url(url, timeout=timeout, pool=pool) as resp:
        return resp.read()
