"""Sorted reads: memmap, h5py, zarr and increasing-only array-likes give NumPy's batches (P13)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup.arrays import RowView, gather, sorted_gather, wants_sorted_reads
from batchup.arrays import sorted_reads as sr
from batchup.sources import ArrayDataSource
from tests.helpers import assert_batches_equal, assert_resumes, stream

h5py = pytest.importorskip("h5py")
zarr = pytest.importorskip("zarr")

N = 57
DATA = (np.arange(N * 3, dtype=np.float32).reshape(N, 3) * 1.5).astype(np.float32)


class IncreasingOnly:
    """An h5py-like reader: only strictly increasing index arrays, logs every read."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.reads: list = []

    __batchup_sorted_reads__ = True

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, idx):  # noqa: ANN001
        idx = np.asarray(idx)
        if idx.size > 1 and not (np.diff(idx) > 0).all():
            raise TypeError("Indexing elements must be in increasing order")
        self.reads.append(idx.copy())
        return self.a[idx]


class Minimal:
    """A bare ``__len__``/``__getitem__`` array-like (no sorted-read opt-in)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, idx):  # noqa: ANN001
        return self.a[idx]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("ooc")
    mm = np.memmap(root / "a.dat", dtype=np.float32, mode="w+", shape=DATA.shape)
    mm[:] = DATA
    mm.flush()
    ro = np.memmap(root / "a.dat", dtype=np.float32, mode="r", shape=DATA.shape)
    f = h5py.File(root / "a.h5", "w")
    h5 = f.create_dataset("x", data=DATA, chunks=(8, 3))
    z = zarr.create_array(store=str(root / "a.zarr"), shape=DATA.shape, chunks=(8, 3), dtype="f4")
    z[:] = DATA
    yield {"memmap": ro, "h5py": h5, "zarr": z}
    f.close()
    del mm, ro


KINDS = ["memmap", "h5py", "zarr", "increasing", "minimal"]


def _make(kind: str, stores: dict, *, source: bool = False):
    if kind == "zarr" and source:
        return RowView(stores["zarr"])  # zarr 3 arrays have no __len__
    if kind == "increasing":
        return IncreasingOnly(DATA)
    if kind == "minimal":
        return Minimal(DATA)
    return stores[kind]


class TestRule:
    def test_plain_ndarray_is_not_sorted(self):
        """Plain arrays stay on the np.take path."""
        assert not wants_sorted_reads(DATA)

    @pytest.mark.parametrize("kind", ["memmap", "h5py", "zarr"])
    def test_known_kinds_are_sorted(self, kind, stores):
        """memmap, h5py and zarr arrays are recognised without importing anything."""
        assert wants_sorted_reads(stores[kind])

    def test_opt_in_and_opt_out(self):
        """The __batchup_sorted_reads__ attribute wins over the type rule."""
        assert wants_sorted_reads(IncreasingOnly(DATA))
        assert not wants_sorted_reads(Minimal(DATA))

        class NoThanks(np.memmap):
            __batchup_sorted_reads__ = False

        assert not wants_sorted_reads(DATA.view(NoThanks))


class TestGather:
    @pytest.mark.parametrize("kind", KINDS)
    @given(idx=st.lists(st.integers(0, N - 1), max_size=40))
    def test_equals_numpy_fancy_indexing(self, kind, stores, idx):
        """P13: any index array, duplicates and disorder included, gives NumPy's rows."""
        d = _make(kind, stores)
        idx = np.asarray(idx, dtype=np.int64)
        got = gather(d, idx)
        expected = DATA[idx]
        assert isinstance(got, np.ndarray) and type(got) is np.ndarray
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)

    def test_reads_are_increasing_and_unique(self):
        """The increasing-only reader sees one read of the distinct sorted rows."""
        d = IncreasingOnly(DATA)
        sorted_gather(d, np.array([40, 3, 40, 17, 2, 3]))
        assert [r.tolist() for r in d.reads] == [[2, 3, 17, 40]]

    def test_dense_span_reads_one_slice(self):
        """A dense batch from a known kind is one slice read (h5py/zarr: one hyperslab)."""
        calls = []

        class FakeH5:
            def __len__(self):
                return N

            def __getitem__(self, idx):  # noqa: ANN001
                calls.append(idx)
                return DATA[idx]

        FakeH5.__module__ = "h5py._hl.fake"
        got = sorted_gather(FakeH5(), np.array([5, 3, 4, 6]))
        np.testing.assert_array_equal(got, DATA[[5, 3, 4, 6]])
        assert calls == [slice(3, 7)]
        calls.clear()
        sorted_gather(FakeH5(), np.array([50, 0]))
        assert isinstance(calls[0], np.ndarray) and calls[0].tolist() == [0, 50]

    def test_non_contiguous_memmap(self, stores):
        """A strided memmap view (no page-touch shortcut) still gives NumPy's rows."""
        view = stores["memmap"][:, ::2]
        assert isinstance(view, np.memmap) and not view.flags.c_contiguous
        idx = np.array([9, 2, 9, 40])
        np.testing.assert_array_equal(gather(view, idx), DATA[:, ::2][idx])

    def test_memmap_batch_is_a_copy(self, stores):
        """A batch from a memmap never aliases the file."""
        b = gather(stores["memmap"], np.arange(5))
        assert not np.shares_memory(b, stores["memmap"])
        b[:] = -1
        assert stores["memmap"][0, 1] == DATA[0, 1]

    def test_empty_batch(self, stores):
        """An empty index array gives an empty batch with the row shape."""
        for kind in KINDS:
            got = gather(_make(kind, stores), np.zeros(0, dtype=np.int64))
            assert len(got) == 0


class TestArrayDataSource:
    @pytest.mark.parametrize("kind", KINDS)
    def test_shuffled_epochs_equal_numpy(self, kind, stores):
        """ArrayDataSource over out-of-core arrays yields the ndarray source's batches."""
        labels = np.arange(N)
        ref = stream(ArrayDataSource([DATA, labels], repeats=2).batch_iterator(8, shuffle=3))
        data = _make(kind, stores, source=True)
        got = stream(ArrayDataSource([data, labels], repeats=2).batch_iterator(8, shuffle=3))
        assert_batches_equal(got, ref)

    def test_weighted_sampler_with_duplicates(self, stores):
        """Draws with replacement (duplicates in a batch) work on h5py."""
        from batchup.samplers import WeightedSampler

        w = np.ones(N)
        w[:3] = 50.0
        ds = ArrayDataSource([stores["h5py"], np.arange(N)], sampler=WeightedSampler(w))
        for x, ix in stream(ds.batch_iterator(16, shuffle=1), 5):
            np.testing.assert_array_equal(x, DATA[ix])

    def test_resume_over_h5py(self, stores):
        """state_dict/load_state_dict resumes an h5py-backed source exactly."""
        assert_resumes(lambda: ArrayDataSource([stores["h5py"]]).batch_iterator(10, shuffle=5), every=2)

    def test_ndarray_path_unchanged(self, monkeypatch):
        """Plain ndarrays never reach the sorted-read code."""
        def boom(*a, **k):  # noqa: ANN002, ANN003
            raise AssertionError("sorted reads used for a plain ndarray")

        monkeypatch.setattr(sr, "sorted_gather", boom)
        stream(ArrayDataSource([DATA]).batch_iterator(7, shuffle=1))


class TestRowView:
    def test_zarr_needs_and_gets_a_length(self, stores):
        """A zarr 3 array is wrapped to get __len__; rows come back in the order asked."""
        rows = RowView(stores["zarr"])
        assert len(rows) == N and rows.shape == DATA.shape
        np.testing.assert_array_equal(rows[np.array([9, 1, 9])], DATA[[9, 1, 9]])
        np.testing.assert_array_equal(rows[3], DATA[3])
        np.testing.assert_array_equal(rows[2:5], DATA[2:5])

    def test_rejects_unshaped(self):
        """Objects without a shape are refused with the reason."""
        with pytest.raises(TypeError, match="shape of at least 1 dimension"):
            RowView([1, 2, 3])
