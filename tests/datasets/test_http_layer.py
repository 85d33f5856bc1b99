"""batchup._http under the dataset downloads: the retry policy, Retry-After, retry classes, kept-alive connections.

No test sleeps for real: ``_http.sleep`` is replaced by a recorder, so the
tests check the waits that were asked for and count the attempts the server saw.
"""
from __future__ import annotations

import email.utils
import os
import re
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup import _http, config
from tests.datasets.conftest import failure_of, sha256

BODY = bytes(range(256)) * 8
DIGEST = sha256(BODY)


@pytest.fixture
def waits(monkeypatch):
    seen: list[float] = []
    monkeypatch.setattr(_http, "sleep", seen.append)
    return seen


@pytest.fixture
def target(batchup_home):
    return os.path.join(config.get_data_dir(), "temp", "x", "file.bin")


def _serve(server, mode="ok", path="/f/file.bin", body=BODY):
    server.files[path] = body
    server.modes[path] = mode
    return server.url + path


class TestRetryPolicy:
    def test_exponential_and_capped(self):
        policy = _http.RetryPolicy(tries=6, backoff=1.0, max_delay=5.0)
        assert [policy.delay(k) for k in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]

    def test_retry_after_is_the_least_wait_up_to_the_limit(self):
        policy = _http.RetryPolicy(tries=3, backoff=1.0, max_delay=10.0)
        assert policy.delay(1, retry_after=0.0) == 1.0
        assert policy.delay(1, retry_after=7.0) == 7.0
        assert policy.delay(1, retry_after=10.0) == 10.0
        assert policy.delay(1, retry_after=10.5) is None

    @pytest.mark.parametrize("kwargs, match", [
        ({"tries": 0}, "tries must be an int >= 1, got 0"),
        ({"tries": True}, "tries must be an int >= 1, got True"),
        ({"backoff": -1}, "backoff must be a number of seconds >= 0, got -1"),
        ({"max_delay": float("nan")}, "max_delay must be a number of seconds >= 0, got nan"),
    ])
    def test_bad_values(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            _http.RetryPolicy(**kwargs)

    @given(st.integers(1, 10), st.floats(0, 100), st.floats(0, 1000), st.one_of(st.none(), st.floats(0, 2000)))
    def test_delay_is_bounded(self, failed, backoff, max_delay, retry_after):
        """Property: a wait is never above max_delay, never below a Retry-After it honours."""
        wait = _http.RetryPolicy(tries=11, backoff=backoff, max_delay=max_delay).delay(failed, retry_after)
        if wait is None:
            assert retry_after is not None and retry_after > max_delay
        else:
            assert 0 <= wait <= max_delay and (retry_after is None or wait >= retry_after)


class TestParseRetryAfter:
    @given(st.integers(0, 10**6))
    def test_seconds(self, seconds):
        assert _http.parse_retry_after(str(seconds)) == float(seconds)

    @given(st.integers(0, 10**6))
    def test_http_date(self, seconds):
        now = 1_700_000_000.0
        stamp = email.utils.formatdate(now + seconds, usegmt=True)
        assert _http.parse_retry_after(stamp, now=now) == pytest.approx(seconds, abs=1)

    def test_a_date_in_the_past_means_now(self):
        assert _http.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT") == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Monday"])
    def test_unreadable_is_ignored(self, value):
        assert _http.parse_retry_after(value) is None


class TestRetryClasses:
    @pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
    def test_retried(self, server, target, waits, status):
        url = _serve(server, status)
        err = failure_of(config.download_and_verify, target, url, DIGEST)
        assert err.status == status and re.search(f"gave up after 3 attempts.*HTTP {status}", str(err))
        assert server.requests["/f/file.bin"] == 3 and waits == [0.01, 0.02]

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
    def test_not_retried(self, server, target, waits, status):
        url = _serve(server, status)
        err = failure_of(config.download_and_verify, target, url, DIGEST)
        assert err.status == status and "gave up after 1 attempt)" in str(err)
        assert server.requests["/f/file.bin"] == 1 and waits == []

    def test_refused_connection_is_retried(self, target, waits):
        from tests.datasets.conftest import closed_port

        err = failure_of(config.download_and_verify, target, f"http://127.0.0.1:{closed_port()}/x", DIGEST)
        assert "gave up after 3 attempts" in str(err) and "could not connect" in str(err) and len(waits) == 2


class TestRetryAfter:
    def test_seconds_are_waited(self, server, target, waits):
        url = _serve(server, ("status", 503, {"Retry-After": "2"}))
        err = failure_of(config.download_and_verify, target, url, DIGEST)
        assert waits == [2.0, 2.0] and server.requests["/f/file.bin"] == 3 and err.status == 503

    def test_http_date_is_waited(self, server, target, waits):
        when = email.utils.formatdate(time.time() + 30, usegmt=True)
        url = _serve(server, ("status", 429, {"Retry-After": when}))
        failure_of(config.download_and_verify, target, url, DIGEST)
        assert len(waits) == 2 and all(28 <= w <= 31 for w in waits)

    def test_longer_than_max_delay_moves_on(self, server, target, waits, capsys):
        url = _serve(server, ("status", 503, {"Retry-After": "86400"}))
        err = failure_of(config.download_and_verify, target, url, DIGEST)
        assert waits == [] and server.requests["/f/file.bin"] == 1
        assert "gave up after 1 attempt (the server asked to wait 86400 s before retrying, more than the 60 s limit)" \
            in str(err)

    def test_success_after_the_wait(self, server, target, waits, monkeypatch):
        """The server is busy once, then serves the file: one wait of Retry-After seconds."""
        _serve(server, ("status", 503, {"Retry-After": "1"}))
        url = server.url + "/f/file.bin"

        def wait_then_recover(seconds):
            waits.append(seconds)
            server.modes["/f/file.bin"] = "ok"

        monkeypatch.setattr(_http, "sleep", wait_then_recover)
        assert config.download_and_verify(target, url, DIGEST) == target
        assert waits == [1.0] and server.requests["/f/file.bin"] == 2


class TestConnections:
    def test_one_connection_for_many_files_and_errors(self, server, batchup_home):
        data = config.get_data_dir()
        for i in range(4):
            server.files[f"/f/{i}.bin"] = BODY + bytes([i])
        for i in range(4):
            assert config.download_data(f"{i}.bin", f"{server.url}/f/{i}.bin", sha256(BODY + bytes([i])))
        assert config.download_data("gone.bin", f"{server.url}/f/gone.bin", DIGEST) is None  # a 404 in between
        server.files["/f/4.bin"] = BODY
        assert config.download_data("4.bin", f"{server.url}/f/4.bin", DIGEST)
        assert server.connections == 1 and sum(server.requests.values()) == 6
        assert sorted(n for n in os.listdir(data) if n.endswith(".bin")) == [f"{i}.bin" for i in range(5)]

    def test_redirect_on_the_same_connection(self, server, target):
        _serve(server, path="/real/file.bin")
        url = _serve(server, ("redirect", "/real/file.bin"))
        assert config.download_and_verify(target, url, DIGEST) == target
        assert server.connections == 1

    def test_a_connection_the_server_dropped_is_replaced_without_an_attempt(self, server, batchup_home, capsys):
        """The server closes an idle kept-alive connection: the next request goes out on a new one."""
        server.files["/f/a.bin"], server.files["/f/b.bin"] = BODY, BODY[::-1]
        server.modes["/f/a.bin"] = "drop"  # served with keep-alive, then the server hangs up
        assert config.download_data("a.bin", f"{server.url}/f/a.bin", DIGEST)
        assert config.download_data("b.bin", f"{server.url}/f/b.bin", sha256(BODY[::-1]))
        assert "failed" not in capsys.readouterr().err and server.connections == 2

    def test_a_close_delimited_response_is_not_reused(self, server, target):
        url = _serve(server, "close", body=BODY)
        failure_of(config.download_and_verify, target, url, DIGEST)
        assert server.connections == 3  # each attempt on a new connection

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    @pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # the child only checks a dict and exits
    def test_a_forked_child_starts_with_an_empty_pool(self, server, batchup_home):
        server.files["/f/a.bin"] = BODY
        assert config.download_data("a.bin", f"{server.url}/f/a.bin", DIGEST)
        assert sum(map(len, _http.POOL._idle.values())) == 1
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os._exit(0 if not _http.POOL._idle else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert sum(map(len, _http.POOL._idle.values())) == 1  # the parent keeps its connection


def test_http_proxy_from_the_environment(server, target, monkeypatch):
    """http_proxy is honoured as urllib honours it: the request goes to the proxy in absolute form."""
    _serve(server)
    monkeypatch.setenv("http_proxy", server.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert config.download_and_verify(target, "http://files.example.invalid/f/file.bin", DIGEST) == target
    assert server.requests["/f/file.bin"] == 1


def test_no_proxy_bypasses_it(server, target, monkeypatch):
    url = _serve(server)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert config.download_and_verify(target, url, DIGEST) == target


@pytest.mark.parametrize("url, match", [
    ("http:///nohost", "url has no host"),
    ("http://h:99999999/x", "url has a bad port"),
    ("ftp://h/x", "http or https"),
])
def test_bad_urls_are_value_errors(url, match):
    with pytest.raises(ValueError, match=match):
        _http.open_url(url, timeout=1)


def test_no_import_of_requests():
    """The client is the standard library's: batchup does not pull in requests."""
    import subprocess

    code = "import sys, batchup._http, batchup.config, batchup.records.urls; print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
