"""ArrayDataSource: alignment, copies, array-likes, grouped gathers, resume, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup.samplers import StandardSampler, SubsetSampler, WeightedSampler
from batchup.sources import ArrayBatchIterator, ArrayDataSource, array
from tests.helpers import assert_batches_equal, assert_resumes


class ListArray:
    """A minimal array-like: __len__ and __getitem__ with an index array."""

    def __init__(self, values):
        self.values = list(values)
        self.requests = []

    def __len__(self):
        return len(self.values)

    def __getitem__(self, index):
        self.requests.append(index)
        if isinstance(index, slice):
            return [self.values[i] for i in range(*index.indices(len(self)))]
        return [self.values[i] for i in np.asarray(index)]


@given(st.integers(0, 200), st.integers(1, 50), st.integers(1, 3), st.integers(0, 2**32 - 1), st.booleans())
def test_alignment_and_indices(n, bs, r, seed, include):
    """P6: Y == 3X + 1 in every batch and X equals the sampled indices."""
    X = np.arange(n)
    Y = 3 * X + 1
    ds = ArrayDataSource([X, Y], repeats=r, include_indices=include)
    total = 0
    for batch in ds.batch_iterator(bs, shuffle=seed):
        if include:
            ix, bx, by = batch
            assert (ix == bx).all()
        else:
            bx, by = batch
        assert (by == 3 * bx + 1).all()
        total += len(bx)
    assert total == n * r == ds.num_samples()


@given(st.integers(1, 3000), st.integers(1, 300), st.integers(0, 100))
def test_grouped_gather_equals_plain_gather(n, bs, seed):
    """The multi-batch np.take path yields exactly what per-batch gathers give."""
    X = np.random.default_rng(seed).random((n, 3)).astype(np.float32)
    y = np.arange(n, dtype=np.int32)
    fast = list(ArrayDataSource([X, y], repeats=2).batch_iterator(bs, shuffle=seed))
    slow = [tuple(np.take(a, ix, axis=0) for a in (X, y))
            for ix in StandardSampler(n, repeats=2).shuffled_indices_batch_iterator(bs, seed)]
    assert_batches_equal(fast, slow)


def test_batches_are_copies_and_independent():
    X = np.arange(40.0).reshape(20, 2)
    it = ArrayDataSource([X]).batch_iterator(4)
    b0 = next(it)[0]
    b1 = next(it)[0]
    b0[:] = -1
    assert X.min() == 0
    assert (b1 == X[4:8]).all()
    assert not np.shares_memory(b0, X)


def test_data_holds_the_objects_passed():
    X, y = np.arange(5), np.arange(5)
    ds = ArrayDataSource([X, y])
    assert ds.data[0] is X and ds.data[1] is y
    assert ds.data == [X, y]


def test_array_like_gets_index_arrays():
    X = ListArray(range(10, 20))
    ds = ArrayDataSource([X, np.arange(10)])
    batches = list(ds.batch_iterator(4, shuffle=3))
    assert all(isinstance(r, np.ndarray) and r.ndim == 1 for r in X.requests)
    for bx, by in batches:
        assert bx == [v + 10 for v in by.tolist()]


def test_samples_by_indices_with_subset_and_slices():
    X = np.arange(10) * 2
    ds = ArrayDataSource([X], indices=np.array([9, 1, 5]), include_indices=True)
    ix, bx = ds.samples_by_indices(np.array([0, 2]))
    assert ix.tolist() == [9, 5] and bx.tolist() == [18, 10]
    ix, bx = ds.samples_by_indices_nomapping(slice(None, 3))
    assert ix.tolist() == [0, 1, 2] and bx.tolist() == [0, 2, 4]
    ix, bx = ds.samples_by_indices_nomapping(slice(7, None))
    assert ix.tolist() == [7, 8, 9]
    with pytest.raises(IndexError, match="10"):
        ds.samples_by_indices_nomapping(np.array([10]))


def test_subset_include_indices_absolute():
    ds = ArrayDataSource([np.arange(100)], indices=[50, 60, 70], include_indices=True)
    for ix, x in ds.batch_iterator(2, shuffle=1):
        assert (ix == x).all() and set(ix.tolist()) <= {50, 60, 70}


def test_weighted_sampler_needs_shuffle_and_is_infinite():
    ds = ArrayDataSource([np.arange(4)], sampler=WeightedSampler([1.0, 0, 0, 1.0]))
    assert ds.num_samples() == np.inf
    with pytest.raises(NotImplementedError):
        ds.batch_iterator(2)
    with pytest.raises(NotImplementedError):
        ds.batch_indices_iterator(2)
    (b,) = next(ds.batch_iterator(10, shuffle=1))
    assert set(b.tolist()) <= {0, 3}


def test_custom_sampler_gets_a_generator_for_an_int_seed():
    class EveryOther(StandardSampler):
        def shuffled_indices_batch_iterator(self, batch_size, shuffle_rng, **kw):
            perm = shuffle_rng.permutation(self.length)
            return iter([perm[i:i + batch_size] for i in range(0, self.length, batch_size)])

    ds = ArrayDataSource([np.arange(6)], sampler=EveryOther(6))
    got = np.concatenate([b[0] for b in ds.batch_iterator(4, shuffle=7)])
    assert sorted(got.tolist()) == list(range(6))


def test_len_and_drop_last():
    ds = ArrayDataSource([np.arange(10)])
    it = ds.batch_iterator(3)
    assert len(it) == 4
    next(it)
    assert len(it) == 3
    assert [len(b[0]) for b in ds.batch_iterator(3, drop_last=True)] == [3, 3, 3]


def test_state_is_json_and_counts_only_consumed_batches():
    """Batches gathered ahead in a group are not counted as consumed."""
    X = np.arange(1000)
    it = ArrayDataSource([X]).batch_iterator(10, shuffle=2)
    first = [next(it)[0].tolist() for _ in range(3)]
    state = json.loads(json.dumps(it.state_dict()))
    assert state["inner"]["position"] == 3
    rest = [b[0].tolist() for b in it]
    fresh = ArrayDataSource([X]).batch_iterator(10, shuffle=2)
    fresh.load_state_dict(state)
    assert [b[0].tolist() for b in fresh] == rest
    assert len(first) + len(rest) == 100


@pytest.mark.parametrize("make", [
    lambda: ArrayDataSource([np.arange(23), np.arange(23) * 2], repeats=2).batch_iterator(4, shuffle=5),
    lambda: ArrayDataSource([np.arange(23)], include_indices=True).batch_iterator(4, shuffle=np.random.RandomState(3)),
    lambda: ArrayDataSource([np.arange(30)], indices=np.arange(0, 30, 2)).batch_iterator(4),
    lambda: ArrayDataSource([ListArray(range(9))], repeats=2).batch_iterator(4, shuffle=1),
])
def test_resume(make):
    assert_resumes(make)


def test_grouping_is_bounded():
    X = np.zeros((1000, 3, 32, 32), np.uint8)
    it = ArrayDataSource([X]).batch_iterator(128, shuffle=1)
    assert isinstance(it, ArrayBatchIterator)
    assert it._group * 128 * X[0].nbytes <= array.CHUNK_BYTES or it._group == 1


@pytest.mark.parametrize("data,exc,match", [
    (np.arange(4), TypeError, "list of array-likes"),
    ((np.arange(4),), TypeError, "list of array-likes"),
    ([], ValueError, "at least one array"),
    ([np.arange(10), np.arange(9)], ValueError, r"10 .*data\[1\] has 9"),
    ([np.float64(3.0)], TypeError, "array-like|at least 1 dimension"),
    ([np.array(3.0)], TypeError, "at least 1 dimension"),
    ([5], TypeError, "array-like"),
])
def test_bad_data(data, exc, match):
    with pytest.raises(exc, match=match):
        ArrayDataSource(data)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"indices": [10]}, IndexError, "10.*10 samples"),
    ({"indices": [-1]}, IndexError, "negative"),
    ({"indices": [0.5]}, TypeError, "1-D integer"),
    ({"indices": [[0]]}, ValueError, "1-D integer"),
    ({"indices": [0], "sampler": StandardSampler(10)}, ValueError, "either indices or sampler"),
    ({"repeats": 2, "sampler": StandardSampler(10)}, ValueError, "repeats"),
    ({"repeats": 0}, ValueError, "repeats"),
    ({"repeats": -2}, ValueError, "repeats"),
    ({"sampler": StandardSampler(9)}, ValueError, "9 samples.*10 samples"),
    ({"sampler": WeightedSampler(np.ones(3))}, ValueError, "3 samples"),
    ({"sampler": SubsetSampler([12])}, IndexError, "12"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ArrayDataSource([np.arange(10)], **kwargs)


def test_empty_forever_raises():
    with pytest.raises(ValueError, match="empty"):
        ArrayDataSource([np.zeros(0)], repeats=-1).batch_iterator(3)
    assert list(ArrayDataSource([np.zeros(0)]).batch_iterator(3)) == []


def test_array_with_shape_but_no_len_is_accepted():
    """zarr 3 arrays have a shape and __getitem__ but no __len__."""

    class NoLen:
        def __init__(self, a):
            self.a = a
            self.shape = a.shape

        def __getitem__(self, idx):
            return self.a[idx]

    X = np.arange(12).reshape(6, 2)
    ds = ArrayDataSource([NoLen(X), np.arange(6)])
    got = np.concatenate([b[0] for b in ds.batch_iterator(4, shuffle=2)])
    assert sorted(got[:, 0].tolist()) == X[:, 0].tolist()
    with pytest.raises(ValueError, match="5"):
        ArrayDataSource([NoLen(X), np.arange(5)])


def test_zarr_array_directly():
    zarr = pytest.importorskip("zarr")
    z = zarr.array(np.arange(20).reshape(10, 2))
    ds = ArrayDataSource([z])
    got = np.concatenate([b[0] for b in ds.batch_iterator(3, shuffle=1)])
    assert sorted(got[:, 0].tolist()) == list(range(0, 20, 2))
