"""FileDataEncoder and UrlDataEncoder (against a local http.server) and the factories."""
from __future__ import annotations

import io
import sys
import threading

import numpy as np
import pytest

from batchup.records import (
    FileDataEncoder,
    InventorySource,
    Record,
    UrlDataEncoder,
    UrlFetchError,
    fetch_url,
    files_source,
    read_inventory,
    urls_source,
)
from tests.helpers import assert_resumes, stream
from tests.records.local_http import LocalServer

pd = pytest.importorskip("pandas")

DIGITS = {f"d{i}": np.arange(4) + 10 * i for i in range(6)}
LABELS = ["odd" if i % 2 else "even" for i in range(6)]


def read_digits(fh):  # noqa: ANN001
    """The user's part: file handle -> array (text files of numbers, as in numblr's datagenerator MNIST example)."""
    return np.array(fh.read().split(), dtype=np.int64)


def read_bytes_digits(fh):  # noqa: ANN001
    return np.array(fh.read().decode().split(), dtype=np.int64)


@pytest.fixture
def digit_dir(tmp_path):
    """One text file per sample, and an inventory CSV with ids (no extension) and labels."""
    for name, arr in DIGITS.items():
        (tmp_path / f"{name}.txt").write_text(" ".join(map(str, arr)))
    pd.DataFrame({"file_name": list(DIGITS), "label": LABELS}).to_csv(tmp_path / "inventory.csv", index=False)
    return tmp_path


def _bodies():
    return {f"{n}.txt": " ".join(map(str, a)).encode() for n, a in DIGITS.items()}


class TestFileDataEncoder:
    def test_reader_and_subclass(self, digit_dir):
        """The user writes only file handle -> array, as a function or by overriding read."""
        class Digits(FileDataEncoder):
            def read(self, fh):  # noqa: ANN001
                return read_bytes_digits(fh)

        records = [Record({"file_name": "d3"}, index=0), Record({"file_name": "d1"}, index=1)]
        by_fn = FileDataEncoder(read_digits, digit_dir, id_mapper=lambda i: i + ".txt", mode="r")
        by_cls = Digits(data_dir=digit_dir, id_mapper=lambda i: i + ".txt")
        for enc in (by_fn, by_cls):
            assert encode(enc, records).tolist() == [DIGITS["d3"].tolist(), DIGITS["d1"].tolist()]

    def test_missing_file_names_file_and_record(self, digit_dir):
        """A missing file raises FileNotFoundError naming the path, the row and the record."""
        enc = FileDataEncoder(read_digits, digit_dir, id_mapper=lambda i: i + ".txt", mode="r")
        with pytest.raises(FileNotFoundError, match=r"row 7 \{'file_name': 'd9'.*d9\.txt") as info:
            enc.transform(Record({"file_name": "d9", "label": "odd"}, index=7))
        assert info.value.filename.endswith("d9.txt")

    def test_missing_id_field(self, digit_dir):
        """A record without its id (or with an empty one) is a clear error."""
        enc = FileDataEncoder(read_digits, digit_dir)
        with pytest.raises(KeyError, match="row 2 has no field 'file_name'"):
            enc.transform(Record({"name": "d1"}, index=2))
        with pytest.raises(ValueError, match="row 3 has a missing value in field 'file_name'"):
            enc.transform(Record({"file_name": None}, index=3))

    def test_threads_same_batch(self, digit_dir):
        """max_workers reads in threads, same batch, no thread left."""
        records = [Record({"file_name": n}, index=i) for i, n in enumerate(DIGITS)]
        serial = FileDataEncoder(read_digits, digit_dir, id_mapper=lambda i: i + ".txt", mode="r")
        threaded = FileDataEncoder(read_digits, digit_dir, id_mapper=lambda i: i + ".txt", mode="r", max_workers=3)
        np.testing.assert_array_equal(threaded.transform_batch(records), serial.transform_batch(records))
        assert not [t for t in threading.enumerate() if t.name.startswith("batchup-files")]

    def test_bad_arguments(self):
        """Bad mode, reader or worker count are refused at construction."""
        with pytest.raises(ValueError, match="mode must be 'rb' or 'r'"):
            FileDataEncoder(read_digits, mode="w")
        with pytest.raises(TypeError, match="reader must be callable"):
            FileDataEncoder("read")
        with pytest.raises(NotImplementedError, match="needs a reader"):
            FileDataEncoder().read(io.BytesIO())


def encode(enc, records):  # noqa: ANN001
    return enc.transform_batch(records)


class TestUrlDataEncoder:
    def test_fetches_and_reads(self):
        """Bodies are fetched from base_url + mapped id and read from a file-like."""
        with LocalServer(_bodies()) as srv:
            enc = UrlDataEncoder(read_bytes_digits, srv.url("files/"), column="id", id_mapper=lambda i: i + ".txt")
            got = enc.transform_batch([Record({"id": "d2"}, index=0), Record({"id": "d5"}, index=1)])
            text = UrlDataEncoder(read_digits, srv.url("files/"), column="id", encoding="utf-8",
                                  id_mapper=lambda i: i + ".txt", max_workers=2)
            got_text = text.transform_batch([Record({"id": "d2"}, index=0), Record({"id": "d5"}, index=1)])
        assert got.tolist() == [DIGITS["d2"].tolist(), DIGITS["d5"].tolist()]
        np.testing.assert_array_equal(got_text, got)

    def test_retries_transient_failures(self):
        """A 503 followed by success is retried and succeeds."""
        with LocalServer(_bodies(), fail_first=2) as srv:
            body = fetch_url(srv.url("flaky/d1.txt"), retries=2, backoff=0)
            assert srv.hits["/flaky/d1.txt"] == 3
        assert body == _bodies()["d1.txt"]

    def test_fails_after_retries(self):
        """A URL still failing after the retries raises UrlFetchError naming URL, attempts, record."""
        with LocalServer(_bodies()) as srv:
            enc = UrlDataEncoder(read_bytes_digits, srv.base, column="id", retries=2, backoff=0)
            with pytest.raises(UrlFetchError, match=r"down.*failed after 3 attempts.*row 4") as info:
                enc.transform(Record({"id": "down"}, index=4))
            assert srv.hits["/down"] == 3
        assert info.value.url.endswith("/down")
        assert isinstance(info.value, OSError)

    def test_404_is_not_retried(self):
        """A 404 fails at once, naming the status."""
        with LocalServer(_bodies()) as srv:
            with pytest.raises(UrlFetchError, match="HTTP 404"):
                fetch_url(srv.url("missing"), retries=3, backoff=0)
            assert srv.hits["/missing"] == 1

    def test_truncated_body_and_stall(self):
        """A short body and a stalled server are retried, then reported."""
        with LocalServer(_bodies(), stall_seconds=1.0) as srv:
            with pytest.raises(UrlFetchError, match="after 2 attempts"):
                fetch_url(srv.url("short/d1.txt"), retries=1, backoff=0)
            assert srv.hits["/short/d1.txt"] == 2
            with pytest.raises(UrlFetchError, match="after 1 attempts"):
                fetch_url(srv.url("stall"), retries=0, timeout=0.2)

    def test_scheme_and_arguments(self):
        """Only http(s) URLs are fetched; bad timeouts and retries are refused."""
        with pytest.raises(ValueError, match="scheme"):
            fetch_url("file:///etc/passwd")
        with pytest.raises(ValueError, match="timeout"):
            UrlDataEncoder(read_digits, timeout=0)
        with pytest.raises(ValueError, match="retries"):
            UrlDataEncoder(read_digits, retries=-1)


class TestFactories:
    def test_files_source_full_form(self, digit_dir):
        """datagenerator's generator_for_files: CSV, data dir, reader, id_mapper, columns, targets."""
        ds = files_source(
            digit_dir / "inventory.csv", digit_dir, read_digits, "onehot",
            id_mapper=lambda i: i + ".txt", id_column="file_name", target_column="label", mode="r",
        )
        batches = stream(ds.batch_iterator(4))
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        assert x.tolist() == [a.tolist() for a in DIGITS.values()]
        assert y.tolist() == [[1, 0] if lab == "even" else [0, 1] for lab in LABELS]
        assert_resumes(lambda: ds.batch_iterator(4, shuffle=2))

    def test_binary_and_default_targets(self, digit_dir):
        """binary=True gives 0/1 targets; the default is int labels."""
        common = dict(id_mapper=lambda i: i + ".txt", mode="r")
        (x, y), = stream(files_source(digit_dir / "inventory.csv", digit_dir, read_digits, binary=True, **common)
                         .batch_iterator(6))
        assert y.tolist() == [0.0, 1.0] * 3 and y.dtype == np.float32
        (x, y), = stream(files_source(digit_dir / "inventory.csv", digit_dir, read_digits, **common).batch_iterator(6))
        assert y.tolist() == [0, 1] * 3
        (x,), = stream(files_source(digit_dir / "inventory.csv", digit_dir, read_digits, target_column=None,
                                    **common).batch_iterator(6))
        assert x.shape == (6, 4)

    def test_encoder_instance_is_configured_on_a_copy(self, digit_dir):
        """A FileDataEncoder subclass gets the factory's folder and id settings; the original is untouched."""
        class Digits(FileDataEncoder):
            def read(self, fh):  # noqa: ANN001
                return read_bytes_digits(fh)

        mine = Digits()
        ds = files_source(digit_dir / "inventory.csv", digit_dir, mine, id_mapper=lambda i: i + ".txt")
        (x, y), = stream(ds.batch_iterator(6))
        assert x[5].tolist() == DIGITS["d5"].tolist()
        assert mine.data_dir is None and mine.id_mapper is None

    def test_inventory_errors(self, digit_dir, tmp_path):
        """Missing columns and empty cells are found when the source is made."""
        with pytest.raises(ValueError, match=r"no target_column 'class'; its columns are \['file_name', 'label'\]"):
            files_source(digit_dir / "inventory.csv", digit_dir, read_digits, target_column="class")
        (tmp_path / "holes.csv").write_text("file_name,label\nd1,odd\n,even\n")
        with pytest.raises(ValueError, match=r"id_column 'file_name' is empty in the rows \[1\]"):
            read_inventory(tmp_path / "holes.csv", id_column="file_name")
        with pytest.raises(ValueError, match="binary=True chooses the target encoder"):
            files_source(digit_dir / "inventory.csv", digit_dir, read_digits, "onehot", binary=True)
        with pytest.raises(ValueError, match="target_encoder must be one of"):
            files_source(digit_dir / "inventory.csv", digit_dir, read_digits, "ordinal")

    def test_missing_file_through_the_source(self, digit_dir):
        """A file missing on disk surfaces when its batch is drawn, naming file and record."""
        (digit_dir / "d4.txt").unlink()
        ds = files_source(digit_dir / "inventory.csv", digit_dir, read_digits, id_mapper=lambda i: i + ".txt", mode="r")
        with pytest.raises(FileNotFoundError, match=r"row 4 .*'d4'.*d4\.txt"):
            stream(ds.batch_iterator(3))

    def test_urls_source(self, digit_dir):
        """datagenerator's generator_for_urls against a local server."""
        with LocalServer(_bodies()) as srv:
            ds = urls_source(
                digit_dir / "inventory.csv", srv.url("files/"), read_bytes_digits,
                id_mapper=lambda i: i + ".txt", binary=True, retries=0, max_workers=2,
            )
            assert isinstance(ds, InventorySource)
            (x, y), = stream(ds.batch_iterator(6))
        assert x.tolist() == [a.tolist() for a in DIGITS.values()] and y.tolist() == [0.0, 1.0] * 3

    def test_missing_pandas_names_the_extra(self, digit_dir, monkeypatch):
        """Reading a CSV inventory without pandas says to install batchup[pandas]."""
        monkeypatch.setitem(sys.modules, "pandas", None)
        with pytest.raises(ImportError, match=r"pip install batchup\[pandas\]"):
            files_source(digit_dir / "inventory.csv", digit_dir, read_digits)
