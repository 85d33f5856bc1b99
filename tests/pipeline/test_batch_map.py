"""batch_map_concat / batch_map_mean: results, counting, progress, n_batches, errors."""
from __future__ import annotations

import numpy as np
import pytest

from batchup.data_source import ArrayDataSource, batch_map_concat, batch_map_mean
from batchup.samplers import WeightedSampler


def batches_of(x, bs):
    return [(x[i:i + bs],) for i in range(0, len(x), bs)]


def test_concat_predictions_in_one_line():
    X = np.arange(10.0)
    (pred,) = ArrayDataSource([X]).batch_map_concat(lambda x: x * 2, 3)
    assert pred.tolist() == (X * 2).tolist()


def test_concat_tuple_results_and_none_skipped():
    out = batch_map_concat(lambda x: None if x[0] == 3 else (x, x + 1), batches_of(np.arange(6), 3))
    assert out[0].tolist() == [0, 1, 2] and out[1].tolist() == [1, 2, 3]


def test_concat_returns_none_when_nothing():
    assert batch_map_concat(lambda x: None, batches_of(np.arange(4), 2)) is None
    assert batch_map_concat(lambda x: x, []) is None


@pytest.mark.parametrize("bad", [[1, 2], 3.0, "s"])
def test_concat_rejects_other_results(bad):
    with pytest.raises(TypeError, match="func must return"):
        batch_map_concat(lambda x: bad, batches_of(np.arange(4), 2))


def test_n_batches_never_fetches_more():
    it = ArrayDataSource([np.arange(10)]).batch_iterator(2)
    a = batch_map_concat(lambda x: x, it, n_batches=2)
    b = batch_map_concat(lambda x: x, it, n_batches=2)
    assert a[0].tolist() == [0, 1, 2, 3] and b[0].tolist() == [4, 5, 6, 7]
    assert batch_map_concat(lambda x: x, it, n_batches=0) is None
    assert len(it) == 1


def test_prepend_args():
    out = batch_map_concat(lambda k, x: x * k, batches_of(np.arange(4), 2), prepend_args=(10,))
    assert out[0].tolist() == [0, 10, 20, 30]
    with pytest.raises(TypeError, match="prepend_args"):
        batch_map_concat(lambda k, x: x, batches_of(np.arange(4), 2), prepend_args=[1])


def test_progress_iter_func_called_with_total_and_leave():
    calls = []

    def progress(it, total=None, leave=True):
        calls.append((total, leave))
        return it

    ArrayDataSource([np.arange(10)]).batch_map_concat(lambda x: x, 4, progress)
    ArrayDataSource([np.arange(10)]).batch_map_mean(lambda x: x.sum(), 4, progress_iter_func=progress)
    assert calls == [(3, False), (3, False)]


def test_progress_true_uses_tqdm(monkeypatch):
    import tqdm.auto

    seen = {}
    real = tqdm.auto.tqdm

    def fake(it, **kwargs):
        seen.update(kwargs)
        return real(it, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", fake)
    ArrayDataSource([np.arange(10)]).batch_map_mean(lambda x: x.sum(), 4, progress=True)
    assert seen["total"] == 3 and seen["unit"] == "batch" and seen["leave"] is False


def test_tqdm_tqdm_works_as_progress_iter_func():
    import tqdm

    out = ArrayDataSource([np.arange(10)]).batch_map_concat(lambda x: x, 4, progress_iter_func=tqdm.tqdm)
    assert out[0].tolist() == list(range(10))


def test_mean_of_sums_with_list_results():
    """The README's f_eval returns a list [loss_sum, err_count]."""
    X = np.arange(10.0)
    y = (X > 4).astype(int)
    loss, err = ArrayDataSource([X, y]).batch_map_mean(lambda x, t: [x.sum(), (t == 0).sum()], 3)
    assert loss == pytest.approx(4.5) and err == pytest.approx(0.5)
    assert isinstance(loss, np.float64)


@pytest.mark.parametrize("scalar", [3, np.float32(3.0), np.int64(3), 3.0, np.float64(3.0)])
def test_mean_accepts_any_real_scalar(scalar):
    (m,) = batch_map_mean(lambda x: scalar, batches_of(np.arange(4), 2))
    assert m == pytest.approx(1.5) and isinstance(m, np.float64)


def test_mean_integer_then_float_results():
    vals = iter([1, 2.5])
    (m,) = batch_map_mean(lambda x: next(vals), batches_of(np.arange(4), 2))
    assert m == pytest.approx(3.5 / 4)


def test_mean_sum_axis_and_arrays():
    (m,) = batch_map_mean(lambda x: np.stack([x, 2 * x], axis=1), batches_of(np.arange(4.0), 3), sum_axis=0)
    assert m.tolist() == [1.5, 3.0]


def test_mean_does_not_corrupt_cached_results():
    cache = np.array([1.0, 2.0])
    (m,) = batch_map_mean(lambda x: cache, batches_of(np.arange(4), 2))
    assert cache.tolist() == [1.0, 2.0] and m.tolist() == [0.5, 1.0]


def test_mean_counts_list_batches_like_tuples():
    batches = [[np.arange(3), np.arange(3)], [np.arange(2), np.arange(2)]]
    (m,) = batch_map_mean(lambda a, b: float(a.size), batches)
    assert m == pytest.approx(1.0)


def test_mean_counts_batches_with_none_result():
    vals = iter([None, 4.0])
    (m,) = batch_map_mean(lambda x: next(vals), batches_of(np.arange(4), 2))
    assert m == pytest.approx(1.0)


@pytest.mark.parametrize("bad", ["loss", {"a": 1}, np.array(["a"])])
def test_mean_rejects_non_numbers(bad):
    with pytest.raises(TypeError):
        batch_map_mean(lambda x: bad, batches_of(np.arange(4), 2))


def test_mean_none_when_nothing():
    assert batch_map_mean(lambda x: None, batches_of(np.arange(4), 2)) is None


def test_infinite_source_needs_n_batches():
    ds = ArrayDataSource([np.arange(4)], repeats=-1)
    with pytest.raises(ValueError, match="infinite"):
        ds.batch_map_mean(lambda x: x.sum(), 2)
    (m,) = ds.batch_map_mean(lambda x: x.sum(), 2, n_batches=4)
    assert m == pytest.approx(1.5)
    wds = ArrayDataSource([np.arange(4)], sampler=WeightedSampler(np.ones(4)))
    with pytest.raises(ValueError, match="infinite"):
        wds.batch_map_concat(lambda x: x, 2, shuffle=1)


def test_method_kwargs_reach_iterator():
    X = np.arange(10)
    (a,) = ArrayDataSource([X]).batch_map_concat(lambda x: x, 4, shuffle=np.random.RandomState(1))
    assert a.tolist() == np.random.RandomState(1).permutation(10).tolist()
    (b,) = ArrayDataSource([X]).batch_map_concat(lambda x: x, 4, drop_last=True)
    assert b.tolist() == list(range(8))
