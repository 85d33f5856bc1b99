"""ds.prefetch(num_workers="auto"): the serial batches, a choice that is measured and explained, bad arguments.

Which pool wins depends on the machine and its load, so most tests check
what must hold whatever wins (the batches, the memory budget, pickling);
the few that check the winner use contrasts no load can hide (work that
only sleeps, or a batch that takes microseconds).
"""
from __future__ import annotations

import json

import numpy as np
import profile_tasks as P
import pytest
from helpers import assert_batches_equal, assert_resumes, stream

import batchup
from batchup.parallel import PoolClosedError, autotune
from batchup.sources import ArrayDataSource

N = 160
BS = 4


def _ds(n=N):
    return ArrayDataSource([np.arange(n * 2, dtype=np.int64).reshape(n, 2), np.arange(n)])


@pytest.mark.parametrize("fn", [P.quick_map, P.python_map, P.sleepy_map])
@pytest.mark.parametrize("shuffle", [None, 7])
def test_auto_yields_the_serial_batches(fn, shuffle):
    """Whatever it chooses, the calibration batches are kept: the serial stream, in order."""
    ds = _ds().map(fn)
    ref = stream(ds.batch_iterator(BS, shuffle=shuffle, drop_last=True))
    with ds.prefetch("auto") as par:
        assert par.choice is None and par.pool is None
        got = stream(par.batch_iterator(BS, shuffle=shuffle, drop_last=True))
        assert_batches_equal(got, ref)
        choice = par.choice
        assert choice is not None and choice.kind in ("inline", "thread", "process")
        assert choice.batches >= autotune.INLINE_MIN_BATCHES
        # A second iteration reuses the choice and its pool.
        pool = par.pool
        assert_batches_equal(stream(par.batch_iterator(BS, shuffle=shuffle, drop_last=True)), ref)
        assert par.pool is pool and par.choice is choice


def test_random_state_shuffle_advances_as_serially():
    """A RandomState is drawn in the caller only, calibration included."""
    ds = _ds().map(P.python_map)
    rs_serial, rs_auto = np.random.RandomState(3), np.random.RandomState(3)
    ref = stream(ds.batch_iterator(BS, shuffle=rs_serial))
    with ds.prefetch("auto") as par:
        assert_batches_equal(stream(par.batch_iterator(BS, shuffle=rs_auto)), ref)
    assert rs_serial.randint(1 << 30) == rs_auto.randint(1 << 30)


def test_a_quick_gather_stays_inline():
    """A batch that takes microseconds is never handed to a worker."""
    with _ds(4000).prefetch("auto") as par:
        stream(par.batch_iterator(8))
        choice = par.choice
    assert choice.kind == "inline" and choice.num_workers == 0
    assert "handing a batch to a worker pays" in choice.reason


def test_work_that_waits_goes_to_threads():
    """A map that only sleeps: threads overlap the sleeps, far faster than the calling thread."""
    with _ds(400).map(P.sleepy_map).prefetch("auto") as par:
        it = par.batch_iterator(BS)
        stream(it, 60)  # the calibration hands out the first batches while it measures
        choice = par.choice
        it.close()
    assert choice.kind == "thread" and choice.num_workers >= 2, str(choice)
    assert choice.rates[f"{choice.num_workers} threads"] > 1.5 * choice.rates["calling thread"]
    assert json.loads(json.dumps(choice.as_dict())) == choice.as_dict()


def test_unpicklable_source_never_gets_processes():
    """A lambda in the map cannot be pickled: processes are not tried, whatever 'fork' could do."""
    ds = _ds().map(lambda X, y: P.python_map(X, y))
    ref = stream(ds.batch_iterator(BS))
    with ds.prefetch("auto", kind="process") as par:
        assert_batches_equal(stream(par.batch_iterator(BS)), ref)
        choice = par.choice
    assert choice.kind == "inline" and "cannot be pickled" in choice.reason, str(choice)
    with ds.prefetch("auto") as par:
        stream(par.batch_iterator(BS))
        assert par.choice.kind != "process", str(par.choice)


def test_kind_thread_never_tries_processes():
    with _ds().map(P.python_map).prefetch("auto", kind="thread") as par:
        stream(par.batch_iterator(BS))
        choice = par.choice
    assert choice.kind in ("inline", "thread") and not any("process" in k for k in choice.rates)


def test_memory_budget_smaller_than_a_batch_stays_inline():
    X = np.zeros((64, 1024), dtype=np.float64)  # 8 KiB rows
    ds = ArrayDataSource([X]).map(P.sleepy_map_one)
    with ds.prefetch("auto", memory_budget=4096) as par:
        assert len(stream(par.batch_iterator(BS))) == 16
        choice = par.choice
    assert choice.kind == "inline" and "larger than the memory budget" in choice.reason
    assert choice.memory_budget == 4096 and choice.budget_source == "given as memory_budget"


def test_memory_budget_bounds_the_batches_in_flight():
    """No pool is measured with more batches in flight than the budget holds, and the buffer fits it."""
    X = np.zeros((400, 1024), dtype=np.float64)  # 32 KiB batches of 4
    ds = ArrayDataSource([X]).map(P.sleepy_map_one)
    for batches in (4, 6):
        with ds.prefetch("auto", memory_budget=batches * 32 * 1024) as par:
            it = par.batch_iterator(BS)
            stream(it, 60)
            choice = par.choice
            it.close()
        assert "would exceed the memory budget" in choice.reason, str(choice)
        assert choice.buffer_size * choice.batch_bytes <= choice.memory_budget
        if batches == 4:  # too few for any pool's measurement (3 rounds of 2 workers at least)
            assert choice.kind == "inline", str(choice)


def test_default_memory_budget_says_where_it_comes_from():
    budget, source = autotune.default_memory_budget()
    assert autotune.BUDGET_MIN <= budget <= autotune.BUDGET_MAX
    assert "memory available" in source


def test_buffer_size_is_kept():
    with _ds().map(P.sleepy_map).prefetch("auto", buffer_size=3) as par:
        stream(par.batch_iterator(BS))
        assert par.choice.buffer_size == 3 and par.batch_buffer_size == 3


def test_a_run_too_short_to_calibrate_is_served_inline_and_decides_nothing():
    ds = _ds(8).map(P.sleepy_map)
    with ds.prefetch("auto") as par:
        assert_batches_equal(stream(par.batch_iterator(BS)), stream(ds.batch_iterator(BS)))
        assert par.choice is None and par.pool is None
        long = _ds(400).map(P.sleepy_map)
    with long.prefetch("auto") as par:
        it = par.batch_iterator(BS)
        next(it)
        assert par.choice is None  # measuring, on the batches it hands out
        stream(it, 60)
        assert par.choice is not None
        it.close()


def test_a_failure_reaches_the_consumer_at_its_batch():
    """Batch 5 fails after the choice (the calling thread, for such quick batches): batches 0-4, its error, the end."""
    ds = ArrayDataSource([P.SlowRows(80, 0.0)]).map(P.failing_rows_map)  # batch 5 fails
    ref = stream(ds.batch_iterator(4), 5)
    with ds.prefetch("auto") as par:
        it = par.batch_iterator(4)
        assert_batches_equal(stream(it, 5), ref)
        with pytest.raises(ValueError, match="bad row 20"):
            next(it)
        assert stream(it) == []
        assert par.choice.kind == "inline"


def test_a_failure_while_calibrating_leaves_the_choice_to_the_next_iterator():
    ds = ArrayDataSource([P.SlowRows(80, 0.0)]).map(lambda X: P.failing_rows_map(X, bad_row=4))  # batch 1
    with ds.prefetch("auto") as par:
        it = par.batch_iterator(4)
        assert len(stream(it, 1)) == 1
        with pytest.raises(ValueError, match="bad row 4"):
            next(it)
        assert stream(it) == []
        assert par.choice is None and par.pool is None


def test_a_failure_while_measuring_a_pool_reaches_the_consumer_at_its_batch():
    """Batch 12 fails on the thread pool being measured: batches 0-11 first, then its error, then the end."""
    ds = _ds(400).map(P.sleepy_failing_map)
    ref = stream(_ds(400).map(P.sleepy_map).batch_iterator(BS), 12)
    with ds.prefetch("auto") as par:
        it = par.batch_iterator(BS)
        assert_batches_equal(stream(it, 12), ref)
        with pytest.raises(ValueError, match="bad batch 12"):
            next(it)
        assert stream(it) == []
        assert par.choice is None and par.pool is None


def test_profiled_auto_reports_the_choice():
    with _ds(400).map(P.sleepy_map).prefetch("auto") as par:
        it = batchup.profile(par.batch_iterator(BS))
        stream(it, 60)
        d = it.stats().as_dict()
        it.close()
    assert d["pipeline"]["choice"]["kind"] == par.choice.kind
    assert d["stages"]["calibration"]["seconds"] > 0
    assert "choice (auto)" in str(it.stats())


def test_checkpoint_of_an_auto_iterator_restores_serially():
    ds = _ds().map(P.quick_map)
    with ds.prefetch("auto") as par:
        assert_resumes(lambda: par.batch_iterator(BS, shuffle=5), every=7)


def test_closed_source_refuses_new_iterators():
    par = _ds().prefetch("auto")
    par.close()
    with pytest.raises(PoolClosedError, match="closed"):
        par.batch_iterator(BS)


def test_bad_arguments_name_themselves():
    ds = _ds()
    with pytest.raises(ValueError, match="num_workers must be an int >= 0 or 'auto', got 'many'"):
        ds.prefetch("many")
    with pytest.raises(ValueError, match="memory_budget applies to num_workers='auto' only"):
        ds.prefetch(2, memory_budget=10**6)
    with pytest.raises(ValueError, match="memory_budget must be a positive number of bytes, got -1"):
        ds.prefetch("auto", memory_budget=-1)
    with pytest.raises(TypeError, match="memory_budget must be an int number of bytes, got '1GB'"):
        ds.prefetch("auto", memory_budget="1GB")
    with pytest.raises(ValueError, match="pass buffer_size or memory_budget, not both"):
        ds.prefetch("auto", buffer_size=4, memory_budget=10**6)
    with pytest.raises(ValueError, match="kind must be 'process' or 'thread'.*got 'gpu'"):
        ds.prefetch("auto", kind="gpu")
    with pytest.raises(ValueError, match="start_method must be None or one of"):
        ds.prefetch("auto", start_method="bogus")
    with pytest.raises(TypeError, match="buffer_size must be an int >= 1"):
        ds.prefetch("auto", buffer_size=2.5)
    with pytest.raises(TypeError, match="ds must be random access"):
        ds.map(P.quick_map).prefetch(0).prefetch("auto")


def test_after_choosing_the_calling_thread_iterators_are_serial():
    """Once 'inline' is chosen, later iterators are the serial iterator (closable, profiled with the choice)."""
    ds = _ds(4000)
    ref = stream(ds.batch_iterator(8, shuffle=1))
    with ds.prefetch("auto") as par:
        first = par.batch_iterator(8, shuffle=1)
        head = stream(first, 20)  # past the calibration: the rest comes from the serial iterator
        state = first.state_dict()
        assert_batches_equal(head + stream(first), ref)
        assert par.choice.kind == "inline"
        later = par.batch_iterator(8, shuffle=1)
        assert isinstance(later, autotune.InlineBatchIterator)
        with later:
            assert_batches_equal(stream(later), ref)
        it = batchup.profile(par.batch_iterator(8, shuffle=1))
        stream(it)
        d = it.stats().as_dict()
    assert d["pipeline"]["kind"] == "serial" and d["pipeline"]["choice"]["kind"] == "inline"
    serial = ds.batch_iterator(8, shuffle=1)
    serial.load_state_dict(json.loads(json.dumps(state)))
    assert_batches_equal(stream(serial), ref[20:])
    with ds.prefetch("auto") as par:  # a checkpoint inside the first, calibrating iterator
        assert_resumes(lambda: par.batch_iterator(8, shuffle=1), limit=40, every=3)
