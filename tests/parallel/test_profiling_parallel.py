"""batchup.profile over prefetching iterators: threads, processes and joblib send their timings back.

As in tests/pipeline/test_profiling.py, no time is compared with a fixed
duration: the contrived pipelines differ by large factors (a 50 ms sleep
against almost nothing), and the tests check which stage is largest, or a
lower bound that a sleep guarantees.
"""
from __future__ import annotations

import json
import time

import joblib
import numpy as np
import profile_tasks as P
import pytest
from helpers import assert_batches_equal, stream

import batchup
from batchup.parallel import InlinePool, JoblibWorkerPool, WorkerProcessPool, WorkerThreadPool
from batchup.sources import ArrayDataSource

N = 48
BS = 4


def _ds(n=N):
    return ArrayDataSource([np.arange(n * 2, dtype=np.int64).reshape(n, 2), np.arange(n)])


def _pool(kind):
    if kind == "inline":
        return InlinePool()
    if kind == "thread":
        return WorkerThreadPool(2)
    if kind == "fork":
        return WorkerProcessPool(2, start_method="fork")
    return WorkerProcessPool(2, start_method="spawn")


@pytest.mark.parametrize("kind", ["inline", "thread", "fork", "spawn"])
def test_profiled_batches_equal_serial(kind):
    """Profiling changes no batch, with every pool (a seeded map included)."""
    ds = _ds().map(P.quick_map)
    ref = stream(ds.batch_iterator(BS, shuffle=2))
    with _pool(kind) as pool:
        it = batchup.profile(pool.parallel_data_source(ds, 4).batch_iterator(BS, shuffle=2))
        assert_batches_equal(stream(it), ref)
        d = it.stats().as_dict()
    assert d["batches"] == len(ref) and d["pipeline"]["kind"] == "prefetch"
    assert json.loads(json.dumps(d)) == d
    if kind == "inline":
        assert d["workers"] is None and d["pipeline"]["pool"] == "inline"
    else:
        w = d["workers"]
        assert w["count"] == 2 and 0 < w["timed_batches"] <= len(ref)
        # Only the tasks submitted before profile() come back untimed: at most the buffer.
        assert w["timed_batches"] >= len(ref) - 4


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_profiled_joblib(backend):
    ds = _ds().map(P.sleepy_map, seed=None)
    ref = stream(ds.batch_iterator(BS))
    with joblib.parallel_config(backend=backend, n_jobs=2):
        pool = JoblibWorkerPool()
    with pool:
        it = batchup.profile(pool.parallel_data_source(ds, 4).batch_iterator(BS))
        assert_batches_equal(stream(it), ref)
        report = it.stats()
    if backend == "loky":
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    w = report.as_dict()["workers"]
    assert w["timed_batches"] > 0 and report.as_dict()["pipeline"]["pool"].startswith("joblib")
    # The map sleeps 50 ms a batch: it dominates the workers' time.
    assert w["stages"]["map"]["seconds"] >= w["timed_batches"] * 0.05
    # joblib runs windows of tasks, so its workers idle at the end of each: 'latency' is fair too.
    assert report.bound in ("map", "startup", "latency")


def test_map_bound_in_threads():
    """A map that waits 50 ms with one thread: the workers bound throughput, in their map functions."""
    ds = _ds(40).map(P.sleepy_map)
    with ds.prefetch(1, kind="thread", buffer_size=2) as par:
        it = batchup.profile(par.batch_iterator(BS))
        stream(it)
        report = it.stats()
    d = report.as_dict()
    assert report.bound == "map" and report.where == "workers", str(report)
    w = d["workers"]
    assert w["stages"]["map"]["seconds"] >= w["timed_batches"] * 0.05
    assert w["stages"]["map"]["seconds"] > 5 * w["stages"]["fetch"]["seconds"]
    assert d["stages"]["wait"]["seconds"] > 5 * d["stages"]["plan"]["seconds"]
    assert "more threads would help" in report.verdict or "more workers" in report.verdict


def test_fetch_bound_in_processes():
    """A source whose reads wait: the verdict names fetching, in the workers."""
    ds = ArrayDataSource([P.SlowRows(40, 0.05)])
    with ds.prefetch(1, buffer_size=2) as par:
        it = batchup.profile(par.batch_iterator(BS))
        stream(it)
        report = it.stats()
    assert report.bound in ("fetch", "startup"), str(report)
    w = report.as_dict()["workers"]
    assert w["stages"]["fetch"]["seconds"] >= w["timed_batches"] * 0.05
    assert w["stages"]["fetch"]["seconds"] > 5 * w["stages"]["map"]["seconds"]


def test_consumer_bound_with_prefetching():
    """A consumer that works 50 ms a batch over a quick thread pool: the consumer bounds throughput."""
    with _ds(40).prefetch(2, kind="thread") as par:
        it = batchup.profile(par.batch_iterator(BS))
        for _ in it:
            time.sleep(0.05)
        report = it.stats()
    d = report.as_dict()
    assert report.bound == "consumer", str(report)
    assert d["stages"]["consumer"]["seconds"] >= 10 * 0.05
    assert d["queue"]["mean_ready"] > 0


def test_stage_times_add_up_with_workers():
    with _ds(40).map(P.sleepy_map).prefetch(2, kind="thread") as par:
        it = batchup.profile(par.batch_iterator(BS))
        stream(it)
        d = it.stats().as_dict()
    s = {k: v["seconds"] for k, v in d["stages"].items()}
    assert s["consumer"] + s["in_next"] == pytest.approx(d["wall_seconds"])
    inside = sum(s[k] for k in ("plan", "wait", "transfer", "dispatch", "adapter", "other"))
    assert inside == pytest.approx(s["in_next"], rel=1e-6, abs=1e-6)
    w = d["workers"]
    assert sum(v["share"] for v in w["stages"].values()) == pytest.approx(1.0)
    assert 0 < w["utilisation"] <= 2.0  # an estimate: timed batches stand for the untimed ones


def test_process_workers_report_transfer():
    """Process workers write batches to shared memory: that time travels back with each batch."""
    X = np.zeros((64, 256, 64), dtype=np.float32)  # 64 KiB rows: batches go through shared memory
    with ArrayDataSource([X]).prefetch(2) as par:
        it = batchup.profile(par.batch_iterator(8))
        got = stream(it)
        d = it.stats().as_dict()
    assert len(got) == 8 and all(b[0].shape == (8, 256, 64) for b in got)
    w = d["workers"]
    assert w["timed_batches"] > 0 and w["stages"]["transfer"]["seconds"] > 0


def test_profiling_after_some_batches_and_checkpoints():
    """profile() on an iterator already under way: batches and state unchanged."""
    ds = _ds().map(P.quick_map)
    ref = stream(ds.batch_iterator(BS, shuffle=4))
    with ds.prefetch(2) as par:
        raw = par.batch_iterator(BS, shuffle=4)
        first = stream(raw, 3)
        it = batchup.profile(raw)
        state = it.state_dict()
        rest = stream(it)
        d = it.stats().as_dict()
    assert_batches_equal(first + rest, ref)
    assert d["batches"] == len(ref) - 3
    serial = ds.batch_iterator(BS, shuffle=4)
    serial.load_state_dict(json.loads(json.dumps(state)))
    assert_batches_equal(stream(serial), ref[3:])


def test_worker_error_reaches_the_consumer_when_profiled():
    ds = ArrayDataSource([np.arange(40), np.arange(40)]).map(P.failing_map)
    with ds.prefetch(2) as par:
        it = batchup.profile(par.batch_iterator(4))
        assert len(stream(it, 5)) == 5
        with pytest.raises(ValueError, match="bad batch 5"):
            next(it)
        assert it.stats().as_dict()["batches"] == 5
