"""The BatchUp 0.2 contract of the fetch machinery: ``None`` plus a report, and the datasets' RuntimeError.

``acquire()`` and the fetch functions return ``None`` on failure and print
why; the dataset classes raise ``RuntimeError`` carrying the same reason, with
the download or verification error as ``__cause__``. Helpers replaced on
``batchup.config`` (spec 5.4) are honoured on both paths.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import shutil

import numpy as np
import pytest

from batchup import config
from batchup._errors import collect_failures, report_failure
from batchup.datasets import dataset, mnist
from tests.datasets import fakes
from tests.datasets.conftest import closed_port, dataset_fails, failure_of, sha256

BODY = b"source file contents\n" * 10
DIGEST = sha256(BODY)


def _copy_source(tmp_path, name="src.txt", data=BODY):
    p = tmp_path / name
    p.write_bytes(data)
    return dataset.CopySourceFile(name, source_path=str(p), sha256=sha256(data))


class TestAcquire:
    def test_download_source_reports_and_returns_none(self, server, monkeypatch):
        monkeypatch.setenv(config.MIRROR_ENV, server.url + "/m")
        upstream = f"http://127.0.0.1:{closed_port()}/a.gz"
        f = dataset.DownloadSourceFile("a.gz", url=upstream, sha256=DIGEST, dataset="ds")
        err = failure_of(f.acquire)
        assert isinstance(err, config.DownloadError) and err.status == 404
        lines = str(err).splitlines()
        assert lines[0] == (f"could not download a.gz from any of its 2 URLs (tried in this order; "
                            f"mirror setting: {server.url}/m):")
        assert lines[1] == f"  1. {server.url}/m/ds/a.gz: HTTP 404 Not Found (1 attempt)"
        assert lines[2].startswith(f"  2. {upstream}: could not connect: ") and lines[2].endswith("(3 attempts)")

    def test_one_url_reports_its_own_error(self, server, monkeypatch):
        monkeypatch.setenv(config.MIRROR_ENV, server.url + "/m")
        monkeypatch.setenv(config.MIRROR_ONLY_ENV, "yes")
        f = dataset.DownloadSourceFile("a.gz", url="http://127.0.0.1:1/a.gz", sha256=DIGEST, dataset="ds")
        assert f.urls_to_try() == [f"{server.url}/m/ds/a.gz"]
        err = failure_of(f.acquire)
        assert isinstance(err, config.DownloadError) and err.status == 404
        assert str(err).startswith(f"could not download {server.url}/m/ds/a.gz to ")
        assert f"Mirror setting: {server.url}/m" in str(err)

    def test_copy_source_names_a_missing_file(self, tmp_path):
        f = dataset.CopySourceFile("x.bin", source_path=str(tmp_path / "absent.bin"))
        err = failure_of(f.acquire)
        assert isinstance(err, dataset.SourceUnavailableError) and "absent.bin does not exist" in str(err)

    def test_copy_source_without_the_keyword_says_which(self):
        err = failure_of(dataset.CopySourceFile("t.bin", arg_name="t_path").acquire)
        assert "pass t_path=<path of t.bin>" in str(err)

    def test_existing_source_mismatch_names_both_digests(self, tmp_path):
        p = tmp_path / "e.bin"
        p.write_bytes(BODY + b"!")
        err = failure_of(dataset.ExistingSourceFile(str(p), sha256=DIGEST).acquire)
        assert isinstance(err, config.IntegrityError)
        assert DIGEST in str(err) and sha256(BODY + b"!") in str(err) and str(p) in str(err)


class TestFetchFunction:
    def test_returns_none_and_prints_the_source_and_the_reason(self, tmp_path, capsys):
        sources = [_copy_source(tmp_path), dataset.CopySourceFile("gone", source_path=str(tmp_path / "gone"))]

        @dataset.fetch_and_convert_dataset(sources, "thing")
        def fetch(paths, target):  # pragma: no cover - never reached
            raise AssertionError

        assert fetch() is None
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (f"SourceUnavailableError: could not acquire file gone on filesystem at "
                           f"{tmp_path / 'gone'}: {tmp_path / 'gone'} does not exist")
        with pytest.raises(dataset.SourceUnavailableError, match="could not acquire file gone") as info:
            fetch.or_raise()
        assert isinstance(info.value.__cause__, dataset.SourceUnavailableError)
        sources[0].clean_up()

    def test_broken_data_gives_none_but_other_errors_propagate(self, tmp_path):
        sources = [_copy_source(tmp_path)]
        raised = [config.ArchiveError("member 'x' is truncated")]

        @dataset.fetch_and_convert_dataset(sources, "thing")
        def fetch(paths, target):
            raise raised[0]

        err = failure_of(fetch)
        assert err is raised[0]
        with pytest.raises(config.ArchiveError, match="truncated"):
            fetch.or_raise()
        for exc in (MemoryError("out of memory"), OSError(28, "No space left on device"), KeyboardInterrupt()):
            raised[0] = exc
            with pytest.raises(type(exc)):
                fetch()
        assert os.path.exists(sources[0].path)  # kept for the next try
        sources[0].clean_up()

    def test_mnist_fetch_function_returns_none(self, server, monkeypatch, capsys, offline_upstreams):
        monkeypatch.setenv(config.MIRROR_ENV, server.url + "/empty")
        assert mnist.fetch_mnist() is None
        err = capsys.readouterr().err
        report = err[err.index("SourceUnavailableError: "):].strip().splitlines()
        assert report[0].startswith("SourceUnavailableError: could not acquire downloadable file "
                                    f"train-images-idx3-ubyte.gz from {offline_upstreams}/0/")
        assert report[0].endswith("from any of its 5 URLs (tried in this order; "
                                  f"mirror setting: {server.url}/empty):")
        assert report[1] == f"  1. {server.url}/empty/mnist/train-images-idx3-ubyte.gz: HTTP 404 Not Found (1 attempt)"
        assert [line.split(": ")[0] for line in report[2:]] == [
            f"  {i + 2}. {offline_upstreams}/{i}/train-images-idx3-ubyte.gz" for i in range(4)]
        with pytest.raises(dataset.SourceUnavailableError, match="HTTP 404") as info:
            mnist.fetch_mnist.or_raise()
        assert isinstance(info.value.__cause__, config.DownloadError) and info.value.__cause__.status == 404
        assert mnist.fetch_mnist.__name__ == "fetch_mnist"
        assert str(inspect.signature(mnist.fetch_mnist)) == "(**kwargs) -> 'str | None'"  # not the converter's


class TestDatasetErrors:
    def test_checksum_mismatch_is_a_runtime_error_caused_by_integrity_error(self, publish, monkeypatch):
        files = fakes.mnist()[0]
        publish(mnist, files, "mnist")
        monkeypatch.setenv(config.MIRROR_ONLY_ENV, "1")  # one URL: its own error is the cause
        bad = "0" * 64
        monkeypatch.setattr(mnist, "FILES", (dataclasses.replace(mnist.FILES[0], sha256=bad),) + mnist.FILES[1:])
        actual = sha256(files["train-images-idx3-ubyte.gz"])
        with dataset_fails(config.IntegrityError, f"expected {bad}, got {actual}") as info:
            mnist.MNIST(n_val=5)
        msg = str(info.value)
        assert "gave up after 3 attempts" in msg and "Mirror setting: http://127.0.0.1:" in msg
        assert msg.startswith("could not load the MNIST dataset: could not acquire downloadable file "
                              "train-images-idx3-ubyte.gz")

    def test_replaced_download_data_is_used_and_its_report_kept(self, monkeypatch):
        calls = []

        def offline(filename, url, sha):
            calls.append(filename)
            report_failure(config.DownloadError(f"offline: no copy of {url}"))
            return None

        monkeypatch.setattr(config, "download_data", offline)
        with dataset_fails(config.DownloadError, r"offline: no copy of http://127\.0\.0\.1:\d+/upstream/0/") as info:
            mnist.MNIST(n_val=5)
        assert calls == [os.path.join("temp", "mnist", "train-images-idx3-ubyte.gz")] * len(mnist.FILES[0].urls)
        assert str(info.value).count("offline: no copy of") == len(mnist.FILES[0].urls)  # each URL, its reason

    def test_replaced_download_data_can_supply_the_files(self, monkeypatch, tmp_path):
        files, ref = fakes.mnist()
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)

        def from_disk(filename, url, sha):
            dest = config.get_data_path(filename)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy(str(tmp_path / os.path.basename(filename)), dest)
            return dest

        monkeypatch.setattr(config, "download_data", from_disk)
        ds = mnist.MNIST(n_val=5)
        np.testing.assert_array_equal(ds.test_X_u8[:, 0], ref["test_X"])

    def test_ctrl_c_is_not_turned_into_a_runtime_error(self, monkeypatch):
        def interrupted(filename, url, sha):
            raise KeyboardInterrupt

        monkeypatch.setattr(config, "download_data", interrupted)
        with pytest.raises(KeyboardInterrupt):
            mnist.MNIST(n_val=5)


def test_collectors_nest_and_are_per_call():
    with collect_failures() as outer:
        report_failure(ValueError("a"))
        with collect_failures() as inner:
            report_failure(ValueError("b"))
        report_failure(ValueError("c"))
    assert [str(e) for e in outer] == ["a", "c"] and [str(e) for e in inner] == ["b"]
