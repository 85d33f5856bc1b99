"""The URL record encoder goes through batchup's one HTTP client: kept-alive connections, Retry-After, retry classes."""
from __future__ import annotations

import numpy as np
import pytest

from batchup import _http, config
from batchup.records import Record, UrlDataEncoder, UrlFetchError, fetch_url
from tests.records.local_http import LocalServer

BODIES = {f"d{i}.txt": f"{i} {i + 1}".encode() for i in range(6)}


def _read(fh):  # noqa: ANN001
    return np.array(fh.read().split(), dtype=np.int64)


@pytest.fixture
def waits(monkeypatch):
    """Record the waits between attempts instead of sleeping."""
    seen: list[float] = []
    monkeypatch.setattr(_http, "sleep", seen.append)
    return seen


def _records(n: int) -> list[Record]:
    return [Record({"id": f"d{i}"}, index=i) for i in range(n)]


def test_one_connection_serves_every_record_of_a_host():
    """Records fetched one after the other reuse one kept-alive connection."""
    with LocalServer(BODIES) as srv:
        enc = UrlDataEncoder(_read, srv.url("files/"), column="id", id_mapper=lambda i: i + ".txt")
        first = enc.transform_batch(_records(6))
        second = enc.transform_batch(_records(3))
        assert srv.connections == 1 and sum(srv.hits.values()) == 9
    assert first.tolist() == [[i, i + 1] for i in range(6)] and second.tolist() == first[:3].tolist()


def test_threads_use_at_most_one_connection_each():
    """With max_workers threads, connections are taken out of the pool, never shared, and reused."""
    with LocalServer(BODIES) as srv:
        enc = UrlDataEncoder(_read, srv.url("files/"), column="id", id_mapper=lambda i: i + ".txt", max_workers=3)
        for _ in range(4):
            got = enc.transform_batch(_records(6))
        assert 1 <= srv.connections <= 3  # at most one per thread, reused across batches; never one per record
        assert sum(srv.hits.values()) == 24
    assert got.tolist() == [[i, i + 1] for i in range(6)]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_the_wait(waits, status):
    """A 429/503 with Retry-After: 3 waits 3 s (longer than the backoff) and then succeeds."""
    with LocalServer(BODIES, fail_first=2) as srv:
        body = fetch_url(srv.url(f"busy/{status}/3/d1.txt"), retries=2, backoff=0.5)
        assert srv.hits[f"/busy/{status}/3/d1.txt"] == 3
    assert body == BODIES["d1.txt"] and waits == [3.0, 3.0]


def test_backoff_wins_over_a_shorter_retry_after(waits):
    """Retry-After is the least wait; the exponential backoff can be longer."""
    with LocalServer(BODIES, fail_first=2) as srv:
        fetch_url(srv.url("busy/503/0/d1.txt"), retries=2, backoff=0.25)
    assert waits == [0.25, 0.5]


def test_retry_after_beyond_the_limit_ends_the_retries(waits):
    """A server asking to wait an hour is not waited for; the error says so."""
    with LocalServer(BODIES, fail_first=5) as srv:
        with pytest.raises(UrlFetchError, match=r"after 1 attempt; the server asked to wait 3600 s.*HTTP 503") as info:
            fetch_url(srv.url("busy/503/3600/d1.txt"), retries=4, backoff=0)
        assert srv.hits["/busy/503/3600/d1.txt"] == 1
    assert waits == [] and info.value.status == 503


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_are_not_retried(waits, status):
    with LocalServer(BODIES, fail_first=5) as srv:
        with pytest.raises(UrlFetchError, match=f"after 1 attempt, not retried: HTTP {status}") as info:
            fetch_url(srv.url(f"busy/{status}/0/d1.txt"), retries=3, backoff=0)
        assert srv.hits[f"/busy/{status}/0/d1.txt"] == 1
    assert waits == [] and info.value.status == status


def test_records_and_dataset_downloads_share_one_client(tmp_path, monkeypatch):
    """UrlDataEncoder and config.download_and_verify both go through _http.open_url and its pool."""
    seen = []
    real = _http.open_url

    def spy(url, **kwargs):  # noqa: ANN001, ANN003
        seen.append(url)
        return real(url, **kwargs)

    monkeypatch.setattr(_http, "open_url", spy)
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "home"))
    import hashlib

    with LocalServer(BODIES) as srv:
        enc = UrlDataEncoder(_read, srv.url("files/"), column="id", id_mapper=lambda i: i + ".txt")
        enc.transform(Record({"id": "d2"}, index=0))
        target = str(tmp_path / "d3.txt")
        digest = hashlib.sha256(BODIES["d3.txt"]).hexdigest()
        assert config.download_and_verify(target, srv.url("files/d3.txt"), digest) == target
        assert srv.connections == 1  # the dataset download reused the encoder's connection
    assert seen == [srv.url("files/d2.txt"), srv.url("files/d3.txt")]
