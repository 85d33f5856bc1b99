"""batchup.profile on serial pipelines: same batches, stage times that add up, a verdict naming the slow stage.

No assertion compares a time with a fixed duration: the contrived pipelines
differ by large factors (a 30-50 ms sleep against almost nothing), and the
tests check which stage is largest, or that a stage holds at least the time
a sleep is known to take.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from helpers import assert_batches_equal, assert_resumes, stream
from hypothesis import given, settings
from hypothesis import strategies as st

import batchup
from batchup import _profile
from batchup.profiling import ProfiledIterator, StallReport
from batchup.sources import ArrayDataSource, BatchIterator
from batchup.sources.base import RandomAccessDataSource

SLEEP = 0.03


def _ds(n=40):
    return ArrayDataSource([np.arange(n * 3).reshape(n, 3), np.arange(n)])


def _sleepy(X, y):
    time.sleep(SLEEP)
    return X, y


class _SlowSource(RandomAccessDataSource):
    """A source whose every fetch waits (a slow disk)."""

    def __init__(self, n):
        super().__init__(n)
        self.data = np.arange(n)

    def samples_by_indices_nomapping(self, indices):
        time.sleep(SLEEP)
        return (self.data[indices],)


def _stages(report):
    return {k: v["seconds"] for k, v in report.as_dict()["stages"].items()}


# -- the batches --------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [None, 3])
@pytest.mark.parametrize("bs", [1, 4, 7])
def test_profiled_batches_equal_serial(shuffle, bs):
    """Profiling changes no batch: plain, mapped with a seed, and gathered several batches at once."""
    ds = _ds().map(lambda X, y, rng: (X + rng.integers(0, 9, X.shape), y), seed=2)
    ref = stream(ds.batch_iterator(bs, shuffle=shuffle))
    assert_batches_equal(stream(batchup.profile(ds.batch_iterator(bs, shuffle=shuffle))), ref)
    # Small rows: ArrayDataSource gathers a span of batches with one np.take.
    plain = ArrayDataSource([np.arange(1000)])
    got = batchup.profile(plain.batch_iterator(bs, shuffle=shuffle))
    assert_batches_equal(stream(got), stream(plain.batch_iterator(bs, shuffle=shuffle)))
    assert got.stats().as_dict()["batches"] == len(plain.batch_iterator(bs))


def test_state_is_the_wrapped_iterators():
    """A checkpoint of the profiled iterator is the serial one's, and restores either way."""
    ds = _ds()
    it = batchup.profile(ds.batch_iterator(6, shuffle=1))
    next(it), next(it)
    plain = ds.batch_iterator(6, shuffle=1)
    next(plain), next(plain)
    assert it.state_dict() == plain.state_dict()
    assert len(it) == len(plain)
    assert_resumes(lambda: batchup.profile(ds.batch_iterator(6, shuffle=1)))


def test_profile_returns_the_same_wrapper_and_rejects_a_second_recorder():
    it = batchup.profile(_ds().batch_iterator(4))
    assert batchup.profile(it) is it
    with pytest.raises(ValueError, match="already being profiled"):
        batchup.profile(it._inner)


def test_profile_rejects_a_data_source():
    with pytest.raises(TypeError, match=r"iterator must be .*batch_iterator"):
        batchup.profile(_ds())


def test_errors_pass_through_and_the_report_still_works():
    def bad(X):
        if X[0] >= 4:
            raise ValueError("bad batch")
        return (X,)

    source = _SlowSource(12)
    source.samples_by_indices_nomapping = lambda idx: (idx,)  # no sleep here
    it = batchup.profile(source.map(bad).batch_iterator(4))
    assert len(stream(it, 1)) == 1
    with pytest.raises(ValueError, match="bad batch"):
        stream(it)
    assert it.stats().as_dict()["batches"] == 1
    assert _profile.LOCAL.maps is None  # the map timer is put back after a failure



@pytest.mark.parametrize("profiled", [False, True])
def test_a_failing_span_delivers_the_batches_before_it_profiled_or_not(profiled):
    """A map that fails on one batch of a gathered span: the batches before it arrive first, then the error."""
    def bad(X):
        if X[0] == 20:
            raise ValueError("bad batch 5")
        return (X,)

    ds = ArrayDataSource([np.arange(64)]).map(bad)
    assert ds.span_batches(4) > 5  # batches 0..7 are gathered with one np.take
    it = ds.batch_iterator(4)
    it = batchup.profile(it) if profiled else it
    got = []
    with pytest.raises(ValueError, match="bad batch 5"):
        for (X,) in it:
            got.append(X.tolist())
    assert got == [list(range(4 * k, 4 * k + 4)) for k in range(5)]
    assert _profile.LOCAL.maps is None
    if profiled:
        assert it.stats().as_dict()["batches"] == 5


def test_maps_under_a_direct_profiler_are_timed_only_inside_next():
    """Right on top of the pipeline's iterator, map time is counted inside the fetches, and nothing between them."""
    ds = ArrayDataSource([np.arange(64)]).map(_sleep_1ms)
    it = batchup.profile(ds.batch_iterator(4))
    assert it.recorder.direct
    for _batch in it:
        assert _profile.LOCAL.maps is None  # between next() calls, nothing is timed
        time.sleep(0.001)  # the consumer's own work
    stages = it.stats().as_dict()["stages"]
    assert 0.016 <= stages["map"]["seconds"] <= stages["in_next"]["seconds"]
    assert stages["consumer"]["seconds"] >= 0.016
    assert stages["adapter"]["seconds"] == 0.0


def _sleep_1ms(X):
    time.sleep(0.001)
    return (X,)


def test_an_error_through_an_opaque_iterator_puts_the_map_timer_back():
    """Over an iterator batchup cannot look into, the profiler itself times maps; an error leaves no timer set."""
    ds = ArrayDataSource([np.arange(12)]).map(_sleep_1ms)

    def opaque():
        it = ds.batch_iterator(4)
        yield next(it)
        raise RuntimeError("the pipeline broke")

    it = batchup.profile(opaque())
    assert not it.recorder.direct
    assert len(stream(it, 1)) == 1
    assert _profile.LOCAL.maps is None  # put back between batches
    with pytest.raises(RuntimeError, match="the pipeline broke"):
        next(it)
    assert _profile.LOCAL.maps is None  # and after the error
    report = it.stats().as_dict()
    assert report["batches"] == 1
    assert report["stages"]["map"]["seconds"] >= 0.001  # the map inside next() was timed from the profiler

# -- nothing when off ----------------------------------------------------------------------------


def test_nothing_is_recorded_when_not_profiled():
    """Without profile(), no recorder, no map timer: the only cost is one `is None` check per batch."""
    it = _ds().map(_quick).batch_iterator(4)
    assert type(it) is BatchIterator and it._rec is None
    stream(it)
    assert _profile.LOCAL.maps is None
    assert it._rec is None


def _quick(X, y):
    assert _profile.LOCAL.maps is None
    return X, y


# -- the verdict ----------------------------------------------------------------------------------


def test_map_bound():
    """A map that sleeps dominates: the verdict names map functions, in the consumer's thread."""
    it = batchup.profile(_ds(24).map(_sleepy).batch_iterator(4))
    n = len(stream(it))
    report = it.stats()
    assert report.bound == "map" and report.where == "consumer"
    s = _stages(report)
    assert s["map"] >= n * SLEEP  # a sleep never returns early
    assert s["map"] > 5 * (s["fetch"] + s["plan"])
    assert "map functions" in report.verdict and "prefetch" in report.verdict


def test_fetch_bound():
    """A source whose fetch sleeps: the verdict names fetching."""
    it = batchup.profile(_SlowSource(24).batch_iterator(4))
    n = len(stream(it))
    report = it.stats()
    assert report.bound == "fetch"
    s = _stages(report)
    assert s["fetch"] >= n * SLEEP and s["fetch"] > 5 * (s["map"] + s["plan"])


def test_consumer_bound():
    """A consumer that works 30 ms per batch on a fast loader: the consumer bounds throughput."""
    it = batchup.profile(_ds(24).batch_iterator(4))
    for _ in it:
        time.sleep(SLEEP)
    report = it.stats()
    assert report.bound == "consumer" and report.where == "consumer"
    s = _stages(report)
    assert s["consumer"] >= 5 * SLEEP and s["consumer"] > 5 * s["in_next"]
    assert "would not help" in report.verdict


def test_stage_times_add_up():
    """The consumer's own time plus its time in next() is the wall time; the stages inside fit in next()."""
    it = batchup.profile(_ds(24).map(_sleepy).batch_iterator(4))
    for _ in it:
        time.sleep(SLEEP / 3)
    d = it.stats().as_dict()
    s = {k: v["seconds"] for k, v in d["stages"].items()}
    assert s["consumer"] + s["in_next"] == pytest.approx(d["wall_seconds"])
    inside = s["plan"] + s["fetch"] + s["map"] + s["adapter"] + s["other"]
    assert inside == pytest.approx(s["in_next"], rel=1e-6, abs=1e-6)
    assert all(v >= 0 for v in s.values())
    shares = {k: v["share"] for k, v in d["stages"].items()}
    assert shares["consumer"] + shares["in_next"] == pytest.approx(1.0)


def test_report_table_and_dict():
    it = batchup.profile(_ds(24).map(_sleepy).batch_iterator(4))
    stream(it)
    report = it.stats()
    assert isinstance(report, StallReport)
    d = report.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["pipeline"] == {"kind": "serial"} and d["batches"] == 6 and d["workers"] is None
    assert d["bound"] == report.bound and d["verdict"] == report.verdict
    text = str(report)
    for row in ("consumer's own work", "waiting in next()", "planning indices", "map functions", "verdict:"):
        assert row in text
    assert "6 batches" in text


def test_report_before_any_batch():
    report = batchup.profile(_ds().batch_iterator(4)).stats()
    assert report.bound is None and "No batch" in report.verdict
    assert "0 batches" in str(report)


# -- iterators batchup cannot look into, and wrappers -----------------------------------------------


def test_any_iterable_is_profiled_as_a_whole():
    def slow_batches():
        for i in range(5):
            time.sleep(SLEEP)
            yield (np.arange(i, i + 3),)

    it = batchup.profile(slow_batches())
    assert len(stream(it)) == 5
    report = it.stats()
    assert report.as_dict()["pipeline"] == {"kind": "opaque"}
    assert report.bound == "pipeline" and "not a batchup pipeline" in report.verdict
    assert batchup.profile([1, 2, 3]).__next__() == 1


def test_wrapped_in_iter_tensors():
    """Through the torch adapter: the serial stages are found under the wrapper, tensors equal the batches."""
    torch_adapter = pytest.importorskip("batchup.adapters.torch")
    pytest.importorskip("torch")
    ds = _ds(24).map(_sleepy)
    it = batchup.profile(torch_adapter.iter_tensors(ds.batch_iterator(4, shuffle=0)))
    got = [(x.numpy(), y.numpy()) for x, y in it]
    assert_batches_equal(got, stream(ds.batch_iterator(4, shuffle=0)))
    report = it.stats()
    assert report.as_dict()["pipeline"]["kind"] == "serial"
    assert report.bound == "map"
    assert "adapter" in report.as_dict()["stages"]


def test_wrapped_in_prefetch_to_device():
    """Through the JAX device prefetcher: the serial stages are found under it."""
    pytest.importorskip("jax")
    from batchup.adapters.jax import prefetch_to_device

    ds = ArrayDataSource([np.arange(24 * 3, dtype=np.float32).reshape(24, 3)]).map(lambda X: _sleepy(X, None)[:1])
    it = batchup.profile(prefetch_to_device(ds.batch_iterator(4), size=2))
    got = [(np.asarray(x),) for (x,) in it]
    assert_batches_equal(got, stream(ds.batch_iterator(4)))
    report = it.stats()
    assert report.as_dict()["pipeline"]["kind"] == "serial" and report.bound == "map"


def test_profiled_iterator_delegates_attributes():
    it = batchup.profile(_ds().batch_iterator(4, shuffle=5))
    assert isinstance(it, ProfiledIterator)
    assert it.plan is it._inner.plan
    with pytest.raises(AttributeError):
        it.no_such_attribute  # noqa: B018


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 60), bs=st.integers(1, 9), seed=st.one_of(st.none(), st.integers(0, 5)),
       drop_last=st.booleans(), take=st.integers(0, 12))
def test_profiling_never_changes_the_stream(n, bs, seed, drop_last, take):
    """For any source size, batch size, order and stopping point: the same batches, the same state,
    and stage times that fit in the wall time."""
    ds = ArrayDataSource([np.arange(n * 2).reshape(n, 2), np.arange(n)])
    plain = ds.batch_iterator(bs, shuffle=seed, drop_last=drop_last)
    it = batchup.profile(ds.batch_iterator(bs, shuffle=seed, drop_last=drop_last))
    got, ref = stream(it, take), stream(plain, take)
    assert_batches_equal(got, ref)
    assert it.state_dict() == plain.state_dict()
    d = it.stats().as_dict()
    assert d["batches"] == len(got)
    s = {k: v["seconds"] for k, v in d["stages"].items()}
    assert all(v >= 0 for v in s.values())
    assert s["consumer"] + s["in_next"] == pytest.approx(d["wall_seconds"], abs=1e-9)
