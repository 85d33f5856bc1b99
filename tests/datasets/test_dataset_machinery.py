"""batchup.datasets.dataset: source files, fetch_and_convert_dataset, delete_dataset_cache."""
from __future__ import annotations

import os

import pytest

from batchup import config
from batchup.datasets import dataset
from tests.datasets.conftest import sha256

BODY = b"source file contents\n" * 10
DIGEST = sha256(BODY)


def test_path_string():
    assert dataset.path_string("a") == "a"
    assert dataset.path_string(lambda: "b") == "b"
    with pytest.raises(TypeError, match="str or a zero-argument callable"):
        dataset.path_string(3)


def test_classnames_from_h5():
    import numpy as np

    assert dataset.classnames_from_h5(np.array([b"caf\xe9", b"dog"])) == ["café", "dog"]


class TestDownloadSourceFile:
    def test_url_from_base_url_and_str(self, batchup_home):
        f = dataset.DownloadSourceFile("a.gz", base_url="http://h/x")
        assert f.url == "http://h/x/a.gz"
        assert dataset.DownloadSourceFile("a.gz", base_url="http://h/x/").url == "http://h/x/a.gz"
        assert str(f) == "downloadable file a.gz from http://h/x/a.gz"
        assert f.temp_filename == os.path.join("temp", "a.gz")
        assert f.path == str(batchup_home / "data" / "temp" / "a.gz")

    def test_dataset_keeps_temp_files_apart(self, batchup_home):
        f = dataset.DownloadSourceFile("a.gz", url="http://h/a.gz", dataset="mnist")
        assert f.path == str(batchup_home / "data" / "temp" / "mnist" / "a.gz")

    def test_row38_neither_url_nor_base_url(self):
        with pytest.raises(TypeError, match="url or base_url"):
            dataset.DownloadSourceFile("a.gz")

    @pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63, 5])
    def test_row39_bad_sha256(self, bad):
        with pytest.raises(ValueError, match="sha256 must be None or a string of 64 hex digits"):
            dataset.DownloadSourceFile("a.gz", url="http://h/a.gz", sha256=bad)

    @pytest.mark.parametrize("url", ["ftp://h/a.gz", "file:///etc/passwd", "h/a.gz"])
    def test_row40_bad_scheme(self, url):
        with pytest.raises(ValueError, match="scheme"):
            dataset.DownloadSourceFile("a.gz", url=url)

    @pytest.mark.parametrize("name", ["../a.gz", "x/a.gz", "/abs/a.gz", "..", ""])
    def test_row41_filename_must_stay_inside(self, name):
        with pytest.raises(ValueError, match="inside the batchup data directory"):
            dataset.DownloadSourceFile(name, url="http://h/a.gz")

    def test_acquire_uses_the_mirror(self, server, monkeypatch, batchup_home):
        server.files["/m/ds/a.gz"] = BODY
        monkeypatch.setenv(config.MIRROR_ENV, server.url + "/m/")
        f = dataset.DownloadSourceFile("a.gz", url="http://official.invalid/path/a.gz", sha256=DIGEST,
                                       dataset="ds")
        assert f.acquire() == f.path and server.requests["/m/ds/a.gz"] == 1
        f.clean_up()
        assert not os.path.exists(f.path)
        f.clean_up()  # twice is fine


class TestCopyAndExisting:
    def test_copy_source_file(self, tmp_path):
        src = tmp_path / "s.bin"
        src.write_bytes(BODY)
        f = dataset.CopySourceFile("s.bin", source_path=str(src), sha256=DIGEST)
        assert str(f) == f"file s.bin on filesystem at {src}"
        assert f.acquire() == f.path and open(f.path, "rb").read() == BODY
        g = dataset.CopySourceFile("t.bin", arg_name="t_path", sha256=DIGEST)
        assert g.acquire() is None
        assert g.acquire(t_path=str(src)) == g.path
        with pytest.raises(TypeError, match="source_path or arg_name"):
            dataset.CopySourceFile("s.bin")

    def test_existing_source_file(self, tmp_path):
        src = tmp_path / "s.bin"
        f = dataset.ExistingSourceFile(lambda: str(src), sha256=DIGEST)
        assert f.acquire() is None
        src.write_bytes(BODY)
        assert f.acquire() == str(src) and str(f) == f"file at {src}"
        f.clean_up()
        assert src.exists()
        assert dataset.ExistingSourceFile(str(src), sha256="0" * 64).acquire() is None
        with pytest.raises(TypeError, match="str or a zero-argument callable"):
            dataset.ExistingSourceFile(5)

    def test_abstract_source(self):
        with pytest.raises(NotImplementedError):
            dataset.AbstractSourceFile().acquire()
        dataset.AbstractSourceFile().clean_up()


class TestFetchAndConvert:
    def _sources(self, tmp_path, n=2):
        files = []
        for i in range(n):
            p = tmp_path / f"src{i}.txt"
            p.write_bytes(BODY + bytes([i]))
            files.append(dataset.CopySourceFile(f"src{i}.txt", source_path=str(p), sha256=sha256(BODY + bytes([i]))))
        return files

    def test_converts_once_then_reuses(self, tmp_path, batchup_home):
        sources = self._sources(tmp_path)
        calls = []

        @dataset.fetch_and_convert_dataset(sources, "thing.txt")
        def fetch_thing(paths, target):
            calls.append((paths, target))
            with open(target, "w") as f:
                f.write("converted")
            return target

        assert fetch_thing.__name__ == "fetch_thing"
        path = fetch_thing()
        assert path == str(batchup_home / "data" / "thing.txt") and open(path).read() == "converted"
        assert calls[0][1] != path  # converted under a temporary name
        assert fetch_thing() == path and len(calls) == 1
        assert not any(os.path.exists(s.path) for s in sources)  # cleaned up after success
        dataset.delete_dataset_cache("thing.txt", lambda: "absent.txt")
        assert not os.path.exists(path)

    def test_unavailable_source_returns_none_and_keeps_earlier_ones(self, tmp_path, capsys):
        sources = self._sources(tmp_path) + [dataset.CopySourceFile("x", source_path=str(tmp_path / "none"))]

        @dataset.fetch_and_convert_dataset(sources, lambda: "thing2")
        def fetch(paths, target):  # pragma: no cover - never reached
            raise AssertionError

        assert fetch() is None
        assert "could not acquire file x on filesystem" in capsys.readouterr().err
        assert all(os.path.exists(s.path) for s in sources[:2])
        for s in sources[:2]:
            s.clean_up()

    def test_converter_returning_none_keeps_sources(self, tmp_path):
        sources = self._sources(tmp_path, 1)

        @dataset.fetch_and_convert_dataset(sources, "thing3")
        def fetch(paths, target):
            return None

        assert fetch() is None and os.path.exists(sources[0].path)
        sources[0].clean_up()

    def test_duplicate_source_paths(self, tmp_path):
        p = tmp_path / "e.bin"
        p.write_bytes(BODY)
        sources = [dataset.ExistingSourceFile(str(p)), dataset.ExistingSourceFile(str(p))]

        @dataset.fetch_and_convert_dataset(sources, "thing4")
        def fetch(paths, target):  # pragma: no cover
            raise AssertionError

        with pytest.raises(ValueError, match="same file"):
            fetch()

    def test_factory_checks(self):
        with pytest.raises(TypeError, match="target_filename"):
            dataset.fetch_and_convert_dataset([], 5)
        with pytest.raises(TypeError, match=r"source_files\[0\]"):
            dataset.fetch_and_convert_dataset(["a"], "t")

    def test_cache_name_must_stay_inside(self):
        @dataset.fetch_and_convert_dataset([], "../outside")
        def fetch(paths, target):  # pragma: no cover
            raise AssertionError

        with pytest.raises(ValueError, match="inside the batchup data directory"):
            fetch()
