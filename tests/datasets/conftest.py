"""Fixtures for the dataset tests: an isolated batchup home and a local HTTP file server.

The server (``http.server.ThreadingHTTPServer`` on 127.0.0.1, port 0, in a daemon
thread) counts requests per path and can misbehave per path: see ``FileServer.modes``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import os
import re
import threading
import time
import urllib.parse
from collections import Counter
from typing import Any

import pytest

from batchup import config
from batchup._errors import collect_failures


class FileServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (URL path -> bytes); ``modes`` (URL path -> mode) makes a path misbehave.

    Modes: ``"ok"`` (default, honours Range), ``"short"`` (half the body, full
    Content-Length, then close), ``"close"`` (half the body, no length,
    close-delimited), ``"flip"`` (one byte changed), ``"html"`` (a 200 HTML
    page), an int status (404, 503, ...), ``"stall"`` (headers then silence),
    ``("redirect", location)``, ``"trickle"`` (the body in slow pieces).
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
        else:  # "ok" or "trickle", with Range support
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


@pytest.fixture(autouse=True)
def batchup_home(tmp_path, monkeypatch):
    """An empty batchup home and HOME per test, fast download settings, and a leftover check."""
    home = tmp_path / "batchup_home"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(config.HOME_ENV, str(home))
    monkeypatch.delenv(config.MIRROR_ENV, raising=False)
    monkeypatch.setattr(config, "TIMEOUT", 2.0)
    monkeypatch.setattr(config, "BACKOFF", 0.01)
    config.reset_config()
    yield home
    config.reset_config()
    leftovers = [os.path.join(d, n) for d, dirs, files in os.walk(home) for n in files + dirs
                 if n.endswith(_TEMP_SUFFIXES) or ".tmp-" in n]
    assert not leftovers, f"temporary files left behind: {leftovers}"


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
