"""Fixtures for the dataset tests: an isolated batchup home, no internet, and a local HTTP file server.

The server (``http.server.ThreadingHTTPServer`` on 127.0.0.1, port 0, in a daemon
thread) counts requests per path and accepted connections, and can misbehave per
path: see ``FileServer.modes``. Every dataset's upstream URLs are pointed at a
closed local port for each test (``offline_upstreams``), so a test reaches only
the servers it starts.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import os
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from typing import Any

import pytest

from batchup import _http, config
from batchup._errors import collect_failures
from batchup.datasets import cifar10, cifar100, fashion_mnist, mnist, stl, svhn, usps


class FileServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (URL path -> bytes); ``modes`` (URL path -> mode) makes a path misbehave.

    Modes: ``"ok"`` (default, honours Range), ``"short"`` (half the body, full
    Content-Length, then close), ``"close"`` (half the body, no length,
    close-delimited), ``"flip"`` (one byte changed), ``"html"`` (a 200 HTML
    page), an int status (404, 503, ...), ``("status", code, headers)`` (a
    status with extra headers, e.g. ``Retry-After``), ``"stall"`` (headers
    then silence), ``("redirect", location)``, ``"trickle"`` (the body in slow
    pieces), ``"drop"`` (served as ``"ok"``, then the connection is closed
    although the response said keep-alive). ``connections`` counts the
    connections accepted.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, Any] = {}
        self.requests: Counter[str] = Counter()
        self.ranges: list[tuple[str, str]] = []
        self.stop = threading.Event()
        self.trickle_delay = 0.02
        self.lock = threading.Lock()
        self.connections = 0

    def get_request(self) -> Any:
        request = super().get_request()
        with self.lock:
            self.connections += 1
        return request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def publish(self, prefix: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            self.files[f"{prefix.rstrip('/')}/{name}"] = data


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def log_message(self, *args: Any) -> None:
        pass

    def _head(self, status: int, length: int | None, ctype: str = "application/octet-stream",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        path = urllib.parse.urlsplit(self.path).path
        with srv.lock:
            srv.requests[path] += 1
        mode = srv.modes.get(path, "ok")
        body = srv.files.get(path)
        if isinstance(mode, tuple) and mode[0] == "status":
            msg = f"status {mode[1]}".encode()
            self._head(mode[1], len(msg), "text/plain", extra=mode[2])
            self.wfile.write(msg)
            return
        if isinstance(mode, int) or body is None:
            status = mode if isinstance(mode, int) else 404
            msg = f"status {status}".encode()
            self._head(status, len(msg), "text/plain")
            self.wfile.write(msg)
            return
        if isinstance(mode, tuple) and mode[0] == "redirect":
            self._head(302, 0, extra={"Location": mode[1]})
            return
        if mode == "short":
            self._head(200, len(body))
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif mode == "close":
            self._head(200, None)
            self.wfile.write(body[: len(body) // 2])
        elif mode == "flip":
            self._head(200, len(body))
            self.wfile.write(body[:-1] + bytes([body[-1] ^ 0xFF]))
        elif mode == "html":
            page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
            self._head(200, len(page), "text/html")
            self.wfile.write(page)
        elif mode == "stall":
            self._head(200, len(body))
            self.wfile.flush()
            srv.stop.wait(30)
            self.close_connection = True
        else:  # "ok", "drop" or "trickle", with Range support
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                srv.ranges.append((path, rng))
                start = int(rng[6:-1])
            part = body[start:]
            extra = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"} if start else {}
            self._head(206 if start else 200, len(part), extra=extra)
            if mode == "trickle":
                step = max(1, len(part) // 50)
                for i in range(0, len(part), step):
                    if srv.stop.is_set():
                        break
                    self.wfile.write(part[i:i + step])
                    self.wfile.flush()
                    time.sleep(srv.trickle_delay)
            else:
                self.wfile.write(part)
            if mode == "drop":
                self.close_connection = True


@pytest.fixture
def server():
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


_TEMP_SUFFIXES = (".part", ".unverified", ".tmp", ".lock", ".extracted")


def leftovers(home: Any) -> list[str]:
    """Temporary files, stray lock files and empty folders under ``home`` (lock files in ``.locks`` are kept)."""
    found = []
    for d, dirs, files in os.walk(home):
        if os.path.basename(d) == ".locks":
            found += [os.path.join(d, n) for n in files + dirs if not n.endswith(".lock")]
            continue
        found += [os.path.join(d, n) for n in files + dirs if n.endswith(_TEMP_SUFFIXES) or ".tmp-" in n]
        if not dirs and not files and os.path.abspath(d) != os.path.abspath(home):
            found.append(d + os.sep + " (empty folder)")
    return found


@pytest.fixture(autouse=True)
def batchup_home(tmp_path, monkeypatch):
    """An empty batchup home and HOME per test, fast download settings, and a leftover check."""
    home = tmp_path / "batchup_home"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(config.HOME_ENV, str(home))
    monkeypatch.delenv(config.MIRROR_ENV, raising=False)
    monkeypatch.delenv(config.MIRROR_ONLY_ENV, raising=False)
    monkeypatch.setattr(config, "TIMEOUT", 2.0)
    monkeypatch.setattr(config, "BACKOFF", 0.01)
    config.reset_config()
    yield home
    config.reset_config()
    _http.POOL.clear()
    left = leftovers(home)
    assert not left, f"temporary files left behind: {left}"


def closed_port() -> int:
    """Return a local port nobody listens on (a connection to it is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_MODULE_TABLES = [(mnist, "FILES"), (fashion_mnist, "FILES"), (svhn, "FILES"), (svhn, "EXTRA_FILES"),
                  (cifar10, "FILES"), (cifar100, "FILES"), (stl, "FILES"), (usps, "FILES")]


@pytest.fixture(autouse=True)
def offline_upstreams(request, monkeypatch):
    """Point every dataset's upstream URLs (same number, same order) at a closed local port.

    Tests marked ``network`` keep the real URLs. Returns the base URL used.
    """
    if request.node.get_closest_marker("network") is not None:
        yield None
        return
    base = f"http://127.0.0.1:{closed_port()}/upstream"
    for module, attr in _MODULE_TABLES:
        table = tuple(dataclasses.replace(f, url=f"{base}/0/{f.filename}", fallback_urls=tuple(
            f"{base}/{i}/{f.filename}" for i in range(1, len(f.urls)))) for f in getattr(module, attr))
        monkeypatch.setattr(module, attr, table)
    yield base


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def publish(server, monkeypatch):
    """``publish(module, files, subdir)``: serve ``files`` under the mirror and trust their digests."""
    monkeypatch.setenv(config.MIRROR_ENV, server.url + "/mirror")

    def _publish(module: Any, files: dict[str, bytes], subdir: str, attr: str = "FILES") -> FileServer:
        server.publish(f"/mirror/{subdir}", files)
        table = tuple(dataclasses.replace(f, sha256=sha256(files[f.filename]))
                      for f in getattr(module, attr) if f.filename in files)
        monkeypatch.setattr(module, attr, table)
        return server

    return _publish


def failure_of(fn: Any, *args: Any) -> Exception:
    """Call a function with the BatchUp 0.2 contract; check it returns ``None`` and return the one error it reported."""
    with collect_failures() as failures:
        assert fn(*args) is None
    assert len(failures) == 1, failures
    return failures[0]


@contextlib.contextmanager
def dataset_fails(cause: type, match: str):
    """Expect a dataset constructor to raise RuntimeError caused by ``cause``, the message matching ``match``."""
    with pytest.raises(RuntimeError, match="could not load the") as info:
        yield info
    assert isinstance(info.value.__cause__, cause), repr(info.value.__cause__)
    assert re.search(match, str(info.value)), str(info.value)
