"""Download faults (reliability.md table C, F1-F12): nothing bad ever becomes a trusted file.

The BatchUp 0.2 functions return ``None`` after a failure and report why; the
tests read the reported error object through ``failure_of`` (a
``collect_failures`` block) and check the printed report separately.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from batchup import _fetch, config
from tests.datasets.conftest import failure_of, sha256

BODY = bytes(range(256)) * 4  # 1000+ bytes
BODY = BODY[:1000]
DIGEST = sha256(BODY)


@pytest.fixture
def target(batchup_home):
    return os.path.join(config.get_data_dir(), "temp", "x", "file.bin")


def _serve(server, mode="ok", body=BODY, path="/f/file.bin"):
    server.files[path] = body
    server.modes[path] = mode
    return server.url + path


def test_f1_happy_path_then_no_second_request(server, target):
    url = _serve(server)
    assert config.download_and_verify(target, url, DIGEST) == target
    assert config.download_and_verify(target, url, DIGEST) == target
    assert server.requests["/f/file.bin"] == 1
    assert config.compute_sha256(target) == DIGEST
    assert sorted(os.listdir(os.path.dirname(target))) == ["file.bin"]


def test_f2_short_body_is_retried_then_download_error(server, target):
    url = _serve(server, "short")
    err = failure_of(config.download_and_verify, target, url, DIGEST)
    assert isinstance(err, config.DownloadError)
    assert re.search(r"3 attempts.*got 500 of 1000 bytes", str(err)) and url in str(err)
    assert server.requests["/f/file.bin"] == 3
    assert not os.path.exists(target)


def test_f3_close_delimited_short_body_is_an_integrity_error(server, target):
    url = _serve(server, "close")
    err = failure_of(config.download_and_verify, target, url, DIGEST)
    assert isinstance(err, config.IntegrityError)
    msg = str(err)
    assert "3 attempts" in msg and DIGEST in msg and sha256(BODY[:500]) in msg and target in msg and "Mirror setting: none" in msg
    assert server.requests["/f/file.bin"] == 3
    assert not os.path.exists(target)


@pytest.mark.parametrize("mode, hint", [("flip", ""), ("html", "HTML page")])
def test_f4_same_length_corruption_and_html_page(server, target, mode, hint):
    url = _serve(server, mode)
    err = failure_of(config.download_and_verify, target, url, DIGEST)
    assert isinstance(err, config.IntegrityError) and re.search(f"expected {DIGEST}.*{hint}", str(err))
    assert server.requests["/f/file.bin"] == 3 and not os.path.exists(target)


@pytest.mark.parametrize("status", [403, 404])
def test_f5_client_errors_are_not_retried(server, target, status):
    url = _serve(server, status)
    err = failure_of(config.download_and_verify, target, url, DIGEST)
    assert isinstance(err, config.DownloadError) and re.search(f"1 attempt.*HTTP {status}", str(err))
    assert url in str(err) and err.status == status
    assert server.requests["/f/file.bin"] == 1


@pytest.mark.parametrize("status", [500, 503])
def test_f5_server_errors_are_retried_with_bounded_time(server, target, status):
    url = _serve(server, status)
    start = time.monotonic()
    err = failure_of(config.download_and_verify, target, url, DIGEST)
    assert re.search(f"3 attempts.*HTTP {status}", str(err)) and err.status == status
    assert server.requests["/f/file.bin"] == 3
    assert time.monotonic() - start < 30


def test_f6_stalled_server_times_out(server, target, monkeypatch):
    monkeypatch.setattr(config, "TIMEOUT", 0.5)
    url = _serve(server, "stall")
    err = failure_of(config.download_and_verify, target, url, DIGEST)
    assert re.search("3 attempts.*got 0 of 1000 bytes.*timed out", str(err))
    assert not os.path.exists(target)


def test_f7_connection_refused(target):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    err = failure_of(config.download_and_verify, target, f"http://127.0.0.1:{port}/file.bin", DIGEST)
    assert isinstance(err, config.DownloadError) and re.search("3 attempts.*could not connect", str(err))


@pytest.mark.parametrize("scheme", ["file", "ftp"])
def test_f8_redirect_to_another_scheme_is_refused(server, target, tmp_path, scheme):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(BODY)
    location = f"file://{secret}" if scheme == "file" else "ftp://127.0.0.1:1/secret.bin"
    url = _serve(server, ("redirect", location))
    err = failure_of(config.download_and_verify, target, url, DIGEST)
    assert re.search("302.*(not allowed|only http and https)", str(err)) and err.status == 302
    assert server.requests["/f/file.bin"] == 1 and not os.path.exists(target)


def test_f8_redirect_loop(server, target):
    url = _serve(server, ("redirect", "/f/file.bin"))
    err = failure_of(config.download_and_verify, target, url, DIGEST)
    assert isinstance(err, config.DownloadError) and "1 attempt" in str(err)


def test_redirect_to_http_is_followed(server, target):
    _serve(server, path="/real/file.bin")
    url = _serve(server, ("redirect", "/real/file.bin"))
    assert config.download_and_verify(target, url, DIGEST) == target


@pytest.mark.parametrize("junk", [b"", BODY[:10], BODY[:-1] + b"\x00"])
def test_f9_corrupt_file_at_the_cache_path_is_refetched(server, target, junk):
    url = _serve(server)
    os.makedirs(os.path.dirname(target))
    with open(target, "wb") as f:
        f.write(junk)
    assert config.download_and_verify(target, url, DIGEST) == target
    assert config.compute_sha256(target) == DIGEST and server.requests["/f/file.bin"] == 1


_CHILD = textwrap.dedent("""
    import sys
    from batchup import config
    print("READY", flush=True)
    path = config.download_and_verify(sys.argv[1], sys.argv[2], sys.argv[3])
    print("DONE", config.compute_sha256(path), flush=True)
""")


def _child(target, url, digest, **kw):
    return subprocess.Popen([sys.executable, "-c", _CHILD, target, url, digest], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, TQDM_DISABLE="1"), **kw)


def test_f10_killed_download_resumes_in_the_next_run(server, target):
    body = os.urandom(200_000)
    url = _serve(server, "trickle", body)
    server.trickle_delay = 0.05
    proc = _child(target, url, sha256(body))
    part = target + ".unverified.part"
    deadline = time.monotonic() + 30
    while not (os.path.exists(part) and os.path.getsize(part) > 0):
        assert time.monotonic() < deadline, "the child never started writing"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not os.path.exists(target)
    server.modes["/f/file.bin"] = "ok"
    assert config.download_and_verify(target, url, sha256(body)) == target
    assert config.compute_sha256(target) == sha256(body)
    assert server.ranges and server.ranges[-1][1].startswith("bytes=") and server.ranges[-1][1] != "bytes=0-"


def test_ctrl_c_keeps_the_partial_bytes_for_the_next_call(server, target, monkeypatch):
    body = os.urandom(200_000)
    url = _serve(server, "trickle", body)
    real_hook = _fetch.Progress.hook

    def interrupt(self, count, block_size, total_size):
        real_hook(self, count, block_size, total_size)
        if count >= 20_000:
            raise KeyboardInterrupt

    monkeypatch.setattr(_fetch.Progress, "hook", interrupt)
    with pytest.raises(KeyboardInterrupt):
        config.download_and_verify(target, url, sha256(body))
    part = target + ".unverified.part"
    assert os.path.getsize(part) >= 20_000 and not os.path.exists(target)
    monkeypatch.setattr(_fetch.Progress, "hook", real_hook)
    server.modes["/f/file.bin"] = "ok"
    assert config.download_and_verify(target, url, sha256(body)) == target
    assert config.compute_sha256(target) == sha256(body) and not os.path.exists(part)
    assert len(server.ranges) == 1 and server.ranges[0][1] not in ("bytes=0-", "")


def test_f11_two_processes_fetch_once(server, target):
    body = os.urandom(100_000)
    url = _serve(server, "trickle", body)
    procs = [_child(target, url, sha256(body)) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert f"DONE {sha256(body)}" in out
    assert server.requests["/f/file.bin"] == 1


_LIMITED = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
""" + _CHILD


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX resource limits")
def test_f12_disk_full_is_an_os_error_naming_the_file_and_not_retried(server, target):
    body = os.urandom(300_000)
    url = _serve(server, "ok", body)
    proc = subprocess.Popen([sys.executable, "-c", _LIMITED, target, url, sha256(body)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "File too large" in err and "file.bin" in err
    assert not re.search(r"^\w*(DownloadError|IntegrityError):", err, re.MULTILINE)  # not reported as a failed fetch
    assert server.requests["/f/file.bin"] == 1
    assert not os.path.exists(target) and not os.path.exists(target + ".unverified.part")


def test_none_digest_accepts_and_prints_the_digest(server, target, capsys):
    url = _serve(server)
    assert config.download_and_verify(target, url, None) == target
    assert DIGEST in capsys.readouterr().err


def test_progress_hook_and_replaceable_urlretrieve(server, target, monkeypatch):
    calls = []

    def fake(url, path, reporthook=None):
        calls.append(url)
        with open(path, "wb") as f:
            f.write(BODY)
        reporthook(1000, 1, 1000)

    monkeypatch.setattr(config, "urlretrieve", fake)
    assert config.download_and_verify(target, "http://example.invalid/file.bin", DIGEST) == target
    assert calls == ["http://example.invalid/file.bin"]


def test_progress_hook_handles_unknown_size(monkeypatch, target):
    def fake(url, path, reporthook=None):
        for n in (0, 10, 20):
            reporthook(n, 1, -1)
        with open(path, "wb") as f:
            f.write(BODY)

    monkeypatch.setattr(config, "urlretrieve", fake)
    assert config.download(target, "http://example.invalid/x") == target


def test_replaceable_download(monkeypatch, target):
    def fake(path, url):
        with open(path, "wb") as f:
            f.write(BODY)
        return path

    monkeypatch.setattr(config, "download", fake)
    assert config.download_and_verify(target, "http://example.invalid/x", DIGEST) == target


def test_download_removes_the_file_on_error(monkeypatch, target):
    def fake(url, path, reporthook=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(config, "urlretrieve", fake)
    with pytest.raises(KeyboardInterrupt):
        config.download(target, "http://example.invalid/x")
    assert not os.path.exists(os.path.dirname(target))  # the file, and the folders made for it


def test_urlretrieve_refuses_other_schemes(target):
    with pytest.raises(ValueError, match="http or https"):
        config.urlretrieve("ftp://example.invalid/x", target)


class TestCopyAndVerify:
    def test_copies_verifies_and_reuses(self, tmp_path, target, monkeypatch):
        src = tmp_path / "src.bin"
        src.write_bytes(BODY)
        copies = []
        real_copy = config.shutil.copy
        monkeypatch.setattr(config.shutil, "copy", lambda a, b: copies.append((a, b)) or real_copy(a, b))
        assert config.copy_and_verify(target, str(src), DIGEST) == target
        assert config.copy_and_verify(target, str(src), DIGEST) == target
        assert len(copies) == 1 and copies[0][1] == target + ".unverified"

    def test_missing_source_is_silent(self, tmp_path, target, capsys):
        assert config.copy_and_verify(target, str(tmp_path / "nope"), DIGEST) is None
        assert capsys.readouterr().err == ""

    def test_mismatch_reports_returns_none_and_leaves_nothing(self, tmp_path, target, capsys):
        src = tmp_path / "src.bin"
        src.write_bytes(BODY + b"!")
        assert config.copy_and_verify(target, str(src), DIGEST) is None
        err = capsys.readouterr().err
        assert err.startswith("IntegrityError: SHA-256 mismatch") and str(src) in err
        assert DIGEST in err and sha256(BODY + b"!") in err
        assert not os.path.exists(target)
        with pytest.raises(config.IntegrityError, match=str(src)):
            config._copy_and_verify(target, str(src), DIGEST)

    def test_copy_data_and_download_data_use_the_data_dir(self, tmp_path, batchup_home, server):
        src = tmp_path / "src.bin"
        src.write_bytes(BODY)
        assert config.copy_data("a.bin", str(src), DIGEST) == str(batchup_home / "data" / "a.bin")
        url = _serve(server)
        assert config.download_data("b.bin", url, DIGEST) == str(batchup_home / "data" / "b.bin")


def test_verify_file(tmp_path, capsys):
    p = tmp_path / "f"
    assert config.verify_file(str(p), DIGEST) is False
    p.write_bytes(BODY)
    assert config.verify_file(str(p), DIGEST) is True
    assert config.verify_file(str(p), DIGEST.upper()) is True
    assert config.verify_file(str(p), "0" * 64) is False
    assert config.verify_file(str(p), None) is True and DIGEST in capsys.readouterr().err
    assert config.verify_file(str(tmp_path), None) is False


class TestReturnNoneContract:
    """BatchUp 0.2: failures are reported and give ``None``; local and argument errors still raise."""

    def test_download_failure_is_printed_with_its_detail(self, server, target, capsys, monkeypatch):
        monkeypatch.setenv(config.MIRROR_ENV, server.url + "/m")
        url = _serve(server, 503)
        assert config.download_and_verify(target, url, DIGEST) is None
        err = capsys.readouterr().err
        assert err.count("failed: HTTP 503") == 3  # one line per attempt
        last = err.strip().splitlines()[-1]
        assert last.startswith("DownloadError: could not download " + url)
        assert "gave up after 3 attempts" in last and "HTTP 503" in last
        assert f"Mirror setting: {server.url}/m." in last

    def test_integrity_failure_is_printed_with_both_digests(self, server, target, capsys):
        url = _serve(server, "flip")
        assert config.download_data("x.bin", url, DIGEST) is None
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("IntegrityError: could not download " + url)
        assert f"expected {DIGEST}" in last and sha256(BODY[:-1] + bytes([BODY[-1] ^ 0xFF])) in last
        assert "Mirror setting: none (upstream URLs only)" in last

    def test_private_twin_raises(self, server, target):
        url = _serve(server, 404)
        with pytest.raises(config.DownloadError, match="HTTP 404") as info:
            config._download_and_verify(target, url, DIGEST)
        assert info.value.status == 404

    def test_disk_full_propagates(self, target, monkeypatch):
        def full(url, path, reporthook=None):
            raise OSError(errno.ENOSPC, "No space left on device", path)

        monkeypatch.setattr(config, "urlretrieve", full)
        with pytest.raises(OSError, match="No space left") as info:
            config.download_and_verify(target, "http://example.invalid/x", DIGEST)
        assert not isinstance(info.value, config.DownloadError)

    def test_bad_arguments_propagate(self, target):
        with pytest.raises(ValueError, match="64 hex digits"):
            config.download_and_verify(target, "http://example.invalid/x", "abc")
        with pytest.raises(ValueError, match="http or https"):
            config.download_and_verify(target, "ftp://example.invalid/x", DIGEST)
        with pytest.raises(ValueError, match="64 hex digits"):
            config.copy_and_verify(target, target, "abc")

    def test_unreadable_config_propagates(self, batchup_home, monkeypatch, tmp_path):
        monkeypatch.delenv(config.HOME_ENV)
        (tmp_path / ".batchup.cfg").write_text("no section header\n")
        config.reset_config()
        with pytest.raises(config.ConfigError, match=".batchup.cfg"):
            config.download_data("x.bin", "http://example.invalid/x", DIGEST)
