"""A local HTTP server for URL tests (127.0.0.1, port 0), with faulty routes.

Routes: ``/files/<name>`` serves a registered body; ``/missing`` 404;
``/flaky/<name>`` answers 503 for the first ``fail_first`` requests of that
name, then the body; ``/busy/<status>/<retry-after>/<name>`` answers that
status with that ``Retry-After`` header for the first ``fail_first``
requests, then the body; ``/down`` always 503; ``/short/<name>`` announces a
longer Content-Length than it sends and closes; ``/stall`` waits before
answering. Every request path is counted in ``server.hits``, every accepted
connection in ``server.connections``. Connections are kept alive (HTTP/1.1).
"""
from __future__ import annotations

import collections
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from batchup import _http

__all__ = ["LocalServer"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: ANN002 - keep test output quiet
        pass

    def _send(self, code: int, body: bytes = b"", length: int | None = None,
              headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        with srv.lock:
            srv.hits[self.path] += 1
            count = srv.hits[self.path]
        parts = self.path.strip("/").split("/", 1)
        route, name = parts[0], (parts[1] if len(parts) > 1 else "")
        if route == "files" and name in srv.bodies:
            self._send(200, srv.bodies[name])
        elif route == "flaky" and name in srv.bodies:
            if count <= srv.fail_first:
                self._send(503, b"busy")
            else:
                self._send(200, srv.bodies[name])
        elif route == "busy" and name.count("/") == 2 and name.rsplit("/", 1)[1] in srv.bodies:
            status, retry_after, body = name.split("/")
            if count <= srv.fail_first:
                self._send(int(status), b"busy", headers={"Retry-After": retry_after})
            else:
                self._send(200, srv.bodies[body])
        elif route == "down":
            self._send(503, b"down")
        elif route == "short" and name in srv.bodies:
            self._send(200, srv.bodies[name][:3], length=len(srv.bodies[name]) + 100)
            self.close_connection = True
        elif route == "stall":
            time.sleep(srv.stall_seconds)
            self._send(200, b"late")
        else:
            self._send(404, b"not found")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def get_request(self):  # noqa: ANN201
        request = super().get_request()
        with self.lock:
            self.connections += 1
        return request

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # a client that timed out and hung up (the stall route) is expected here


class LocalServer:
    """Context manager: ``with LocalServer({"a.txt": b"..."}) as srv: srv.url("files/a.txt")``."""

    def __init__(self, bodies: dict, *, fail_first: int = 1, stall_seconds: float = 1.0) -> None:
        self._srv = _Server(("127.0.0.1", 0), _Handler)
        self._srv.bodies = dict(bodies)
        self._srv.hits = collections.Counter()
        self._srv.connections = 0
        self._srv.lock = threading.Lock()
        self._srv.fail_first = fail_first
        self._srv.stall_seconds = stall_seconds
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def hits(self) -> collections.Counter:
        return self._srv.hits

    @property
    def connections(self) -> int:
        return self._srv.connections

    @property
    def base(self) -> str:
        host, port = self._srv.server_address[:2]
        return f"http://{host}:{port}/"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        _http.POOL.clear()  # the kept-alive connections to this server end with it
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(5)
