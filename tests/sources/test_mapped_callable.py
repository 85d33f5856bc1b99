"""MapDataSource, CallableDataSource, IteratorDataSource and coerce_data_source."""
from __future__ import annotations

import numpy as np
import pytest

from batchup.sources import (
    AbstractDataSource,
    ArrayDataSource,
    CallableDataSource,
    IteratorDataSource,
    MapDataSource,
    RandomAccessDataSource,
    coerce_data_source,
)
from tests.helpers import assert_resumes


def test_map_unpacks_batches_and_keeps_identity():
    src = ArrayDataSource([np.arange(6), np.arange(6) * 2], include_indices=True)
    fn = lambda ix, x, y: (ix, x + y)  # noqa: E731
    ds = src.map(fn)
    assert isinstance(ds, MapDataSource) and ds.source is src and ds.fn is fn
    ix, s = next(ds.batch_iterator(6))
    assert (s == 3 * ix).all()
    assert ds.is_random_access and ds.num_samples() == 6
    assert ds.samples_by_indices(np.array([2]))[1].tolist() == [6]
    assert list(ds.batch_indices_iterator(6))[0].tolist() == list(range(6))


def test_seeded_map_gets_a_generator_per_batch():
    src = ArrayDataSource([np.zeros(8)])
    ds = src.map(lambda x, rng: (x + rng.random(len(x)),), seed=3)
    a = [b[0].tolist() for b in ds.batch_iterator(2)]
    b = [b[0].tolist() for b in ds.batch_iterator(2)]
    assert a == b and len({tuple(x) for x in a}) == 4
    assert ds.samples_by_indices_nomapping(np.arange(2), batch_number=1)[0].tolist() == a[1]
    with pytest.raises(ValueError, match="batch number"):
        ds.samples_by_indices_nomapping(np.arange(2))


def test_map_of_non_random_access():
    ds = CallableDataSource(lambda bs, **kw: iter([(np.arange(3),)])).map(lambda x: (x,))
    with pytest.raises(TypeError, match="random access"):
        ds.batch_indices_iterator(2)
    with pytest.raises(TypeError, match="random access"):
        ds.samples_by_indices(np.arange(2))
    with pytest.raises(TypeError, match="callable"):
        MapDataSource(ArrayDataSource([np.arange(3)]), 5)


def make_batches(batch_size, shuffle=None, **kwargs):
    for i in range(0, 7, batch_size):
        yield (np.arange(i, min(i + batch_size, 7)),)


def test_callable_source_passes_kwargs_and_counts():
    seen = {}

    def fn(batch_size, **kwargs):
        seen.update(kwargs, batch_size=batch_size)
        return make_batches(batch_size)

    ds = CallableDataSource(fn, lambda **kw: 7)
    assert [b[0].tolist() for b in ds.batch_iterator(3, shuffle=True, foo=1)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert seen == {"shuffle": True, "foo": 1, "batch_size": 3}
    assert ds.num_samples() == 7
    assert CallableDataSource(fn, np.int64(5)).num_samples() == 5
    assert CallableDataSource(fn, np.inf).num_samples() == np.inf
    assert CallableDataSource(fn).num_samples() is None


@pytest.mark.parametrize("bad", ["10", 3.0])
def test_bad_counts(bad):
    with pytest.raises(TypeError, match="num_samples_fn"):
        CallableDataSource(make_batches, bad)
    with pytest.raises(TypeError, match="n_samples"):
        IteratorDataSource(iter([]), bad)
    with pytest.raises(TypeError, match="callable"):
        CallableDataSource(5)


def test_callable_resume_by_replay():
    assert_resumes(lambda: CallableDataSource(make_batches, 7).batch_iterator(2))


def test_iterator_source_returns_the_same_iterator():
    it = iter([(1,), (2,)])
    ds = IteratorDataSource(it, 2)
    assert ds.batch_iterator(100, shuffle=True) is it
    assert ds.num_samples() == 2


def test_coerce():
    ds = ArrayDataSource([np.arange(3)])
    assert coerce_data_source(ds) is ds
    assert isinstance(coerce_data_source((np.arange(3), [1, 2, 3])), ArrayDataSource)
    assert isinstance(coerce_data_source(iter([])), IteratorDataSource)
    assert isinstance(coerce_data_source(make_batches), CallableDataSource)
    with pytest.raises(ValueError, match="empty"):
        coerce_data_source([])
    with pytest.raises(TypeError, match="element 0"):
        coerce_data_source([ds])
    with pytest.raises(TypeError, match="element 1"):
        coerce_data_source([np.arange(3), 5])
    for bad in ({"a": 1}, 5, np.arange(3)):
        with pytest.raises(TypeError, match="cannot make a data source"):
            coerce_data_source(bad)


def test_abstract_classes_are_instantiable_and_raise():
    a = AbstractDataSource()
    assert not a.is_random_access
    with pytest.raises(NotImplementedError):
        a.batch_iterator(3)
    with pytest.raises(NotImplementedError):
        a.num_samples()
    r = RandomAccessDataSource(length=10)
    assert r.is_random_access and r.num_samples() == 10
    with pytest.raises(NotImplementedError):
        next(r.batch_iterator(3))
    assert not hasattr(a, "__len__") and not hasattr(r, "__getitem__")


def test_nested_seeded_maps_by_indices_match_iteration():
    src = ArrayDataSource([np.zeros(6)])
    inner = src.map(lambda x, rng: (x + rng.random(len(x)),), seed=1)
    outer = inner.map(lambda x, rng: (x + 10 * rng.random(len(x)),), seed=2)
    it_batches = [b[0].tolist() for b in outer.batch_iterator(2)]
    by_index = [outer.samples_by_indices_nomapping(np.arange(2 * k, 2 * k + 2), batch_number=k)[0].tolist()
                for k in range(3)]
    assert it_batches == by_index
