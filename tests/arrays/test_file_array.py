"""FileArray: files read lazily, only for the batches drawn; errors name the file."""
from __future__ import annotations

import pickle
import sys
import threading

import numpy as np
import pytest

from batchup.arrays import FileArray, read_image, read_npy
from batchup.sources import ArrayDataSource
from tests.helpers import assert_batches_equal, assert_resumes, stream

N = 12


@pytest.fixture
def npy_dir(tmp_path):
    for i in range(N):
        np.save(tmp_path / f"s{i}.npy", np.full((2, 3), i, dtype=np.int16))
    return tmp_path


def _names():
    return [f"s{i}.npy" for i in range(N)]


class Counting:
    """A loader that records which files it read (picklable)."""

    def __init__(self) -> None:
        self.paths: list = []

    def __call__(self, path):  # noqa: ANN001
        self.paths.append(path)
        return np.load(path)


class TestIndexing:
    def test_int_slice_and_array(self, npy_dir):
        """Ints give one sample, slices and int arrays a stacked batch."""
        fa = FileArray(_names(), np.load, base_dir=npy_dir)
        assert len(fa) == N
        assert fa[3].tolist() == [[3, 3, 3]] * 2
        assert fa[-1][0, 0] == N - 1
        assert fa[2:5][:, 0, 0].tolist() == [2, 3, 4]
        assert fa[np.array([7, 1, 7])][:, 0, 0].tolist() == [7, 1, 7]
        assert fa[[0, -2]][:, 0, 0].tolist() == [0, N - 2]
        assert fa[np.array([], dtype=np.int64)].shape[0] == 0

    def test_out_of_range(self, npy_dir):
        """Indices past the end raise IndexError naming the index."""
        fa = FileArray(_names(), np.load, base_dir=npy_dir)
        with pytest.raises(IndexError, match="index 12 is out of range"):
            fa[12]
        with pytest.raises(IndexError, match="index 40"):
            fa[np.array([1, 40])]

    def test_bad_index_kind(self, npy_dir):
        """Float or 2-D indices are refused."""
        fa = FileArray(_names(), np.load, base_dir=npy_dir)
        with pytest.raises(TypeError, match="1-D integer array"):
            fa[np.array([0.5])]
        with pytest.raises(TypeError, match="1-D integer array"):
            fa[np.zeros((2, 2), dtype=int)]

    def test_bad_arguments(self):
        """A single path, a non-callable loader or max_workers=0 are refused."""
        with pytest.raises(TypeError, match="single path"):
            FileArray("a.png", np.load)
        with pytest.raises(TypeError, match="loader must be callable"):
            FileArray(["a"], "np.load")
        with pytest.raises(ValueError, match="max_workers"):
            FileArray(["a"], np.load, max_workers=0)


class TestLaziness:
    def test_reads_only_drawn_files(self, npy_dir):
        """Building the source reads nothing; each batch reads exactly its files."""
        loader = Counting()
        fa = FileArray(_names(), loader, base_dir=npy_dir)
        ds = ArrayDataSource([fa, np.arange(N)])
        it = ds.batch_iterator(4, shuffle=7)
        assert loader.paths == []
        x, y = next(it)
        assert sorted(loader.paths) == sorted(str(npy_dir / f"s{i}.npy") for i in y)
        np.testing.assert_array_equal(x[:, 0, 0], y)

    def test_same_batches_as_in_memory(self, npy_dir):
        """A file-backed source gives the in-memory source's batches, and resumes."""
        full = np.stack([np.load(npy_dir / n) for n in _names()])
        ref = stream(ArrayDataSource([full, np.arange(N)]).batch_iterator(5, shuffle=2))
        fa = FileArray(_names(), read_npy, base_dir=npy_dir)
        assert_batches_equal(stream(ArrayDataSource([fa, np.arange(N)]).batch_iterator(5, shuffle=2)), ref)
        assert_resumes(lambda: ArrayDataSource([fa, np.arange(N)]).batch_iterator(5, shuffle=2))

    def test_threads_give_the_same_batch(self, npy_dir):
        """max_workers reads in threads, same result, and leaves no thread behind."""
        serial = FileArray(_names(), np.load, base_dir=npy_dir)
        threaded = FileArray(_names(), np.load, base_dir=npy_dir, max_workers=3)
        idx = np.array([5, 0, 11, 3, 3, 8])
        np.testing.assert_array_equal(threaded[idx], serial[idx])
        assert not [t for t in threading.enumerate() if t.name.startswith("batchup-filearray")]

    def test_pickles(self, npy_dir):
        """A FileArray with a module-level loader pickles (for worker processes)."""
        fa = FileArray(_names(), read_npy, base_dir=npy_dir, max_workers=2)
        back = pickle.loads(pickle.dumps(fa))
        np.testing.assert_array_equal(back[np.array([4, 2])], fa[np.array([4, 2])])


class TestErrors:
    def test_missing_file_names_file_and_sample(self, npy_dir):
        """A missing file raises FileNotFoundError naming the path and the sample."""
        names = _names()
        names[6] = "gone.npy"
        fa = FileArray(names, np.load, base_dir=npy_dir, max_workers=2)
        with pytest.raises(FileNotFoundError, match=r"sample 6: file not found: .*gone\.npy") as info:
            fa[np.array([1, 6])]
        assert info.value.filename.endswith("gone.npy")

    def test_loader_error_gets_a_note(self, npy_dir):
        """Other loader errors keep their type and gain a note naming the file."""
        def bad(path):  # noqa: ANN001
            raise RuntimeError("corrupt")

        fa = FileArray(_names(), bad, base_dir=npy_dir)
        with pytest.raises(RuntimeError, match="corrupt") as info:
            fa[2]
        if sys.version_info >= (3, 11):
            assert any("s2.npy" in n for n in info.value.__notes__)

    def test_shape_mismatch_names_the_files(self, tmp_path):
        """Files of different shapes cannot stack; the message names them."""
        np.save(tmp_path / "a.npy", np.zeros(3))
        np.save(tmp_path / "b.npy", np.zeros(4))
        fa = FileArray(["a.npy", "b.npy"], np.load, base_dir=tmp_path)
        with pytest.raises(ValueError, match=r"different shapes.*\(3,\).*a\.npy.*\(4,\).*b\.npy"):
            fa[np.array([0, 1])]


class TestLoaders:
    def test_read_image(self, tmp_path):
        """read_image returns an array, converting the mode when asked."""
        from PIL import Image

        Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(tmp_path / "g.png")
        assert read_image(tmp_path / "g.png").shape == (3, 4)
        rgb = read_image(tmp_path / "g.png", mode="RGB", dtype=np.float32)
        assert rgb.shape == (3, 4, 3) and rgb.dtype == np.float32 and rgb[2, 3, 0] == 11

    def test_missing_pillow_names_the_extra(self, tmp_path, monkeypatch):
        """Without pillow, read_image says to install batchup[images]."""
        monkeypatch.setitem(sys.modules, "PIL.Image", None)
        with pytest.raises(ImportError, match=r"pip install batchup\[images\]"):
            read_image(tmp_path / "x.png")
