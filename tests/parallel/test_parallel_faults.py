"""Faults: dead workers, abandoned iterators, Ctrl-C, parent death, exit (reliability W5-W12).

Cases that could hang or kill the interpreter run in a child interpreter with a
hard timeout; the child prints what the test asserts on.
"""
from __future__ import annotations

import gc
import os
import signal
import time

import numpy as np
import parallel_tasks as T
import pytest
from conftest import run_child, start_child, wait_gone

from batchup.parallel import WorkerCrashedError, WorkerProcessPool, WorkerThreadPool
from batchup.sources import ArrayDataSource


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_sigkill_is_reported_and_pool_recovers(method):
    """W5: SIGKILL of a worker -> WorkerCrashedError naming pid and signal; delivered batches are a prefix."""
    ds = ArrayDataSource([np.arange(400)])
    ref = [b[0] for b in ds.batch_iterator(4, shuffle=1)]
    with WorkerProcessPool(2, start_method=method) as pool:
        it = pool.parallel_data_source(ds, 6).batch_iterator(4, shuffle=1)
        got = [next(it)[0] for _ in range(3)]
        victim = pool.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(WorkerCrashedError, match=rf"pid {victim}\) was killed by signal SIGKILL") as info:
            for b in it:
                got.append(b[0])
        assert time.monotonic() - start < 5
        assert "out-of-memory" in str(info.value)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref))
        assert list(it) == []
        assert len(list(pool.parallel_data_source(ds, 4).batch_iterator(50))) == 8


@pytest.mark.parametrize("how, expect", [("segv", "killed by signal SIGSEGV"), ("exit", "exited with code 123")])
def test_segfault_and_exit(how, expect):
    """W6: a segfault or sys.exit(123) in a worker is a WorkerCrashedError, never a hang."""
    res = run_child(f"""
        import functools, numpy as np, parallel_tasks as T
        from batchup.parallel import WorkerProcessPool, WorkerCrashedError
        from batchup.sources import ArrayDataSource
        ds = ArrayDataSource([np.arange(40)]).map(functools.partial(T.crash_on, bad=12, how={how!r}))
        with WorkerProcessPool(2) as pool:
            n = 0
            try:
                for b in pool.parallel_data_source(ds, 4).batch_iterator(4):
                    n += 1
            except WorkerCrashedError as e:
                print("CRASH", n, e)
            print("AGAIN", len(list(pool.parallel_data_source(ds.source, 4).batch_iterator(4))))
    """)
    assert res.returncode == 0, res.stderr
    assert "CRASH 3 " in res.stdout and expect in res.stdout
    assert "AGAIN 10" in res.stdout


def test_thread_timeout_and_stuck_close():
    """W7 (threads): BatchTimeoutError within timeout + 3 s; close() returns and warns about the stuck thread;
    the interpreter exits once the task ends (concurrent.futures joins its threads at exit)."""
    res = run_child("""
        import functools, time, warnings, numpy as np, parallel_tasks as T
        from batchup.parallel import WorkerThreadPool, BatchTimeoutError
        from batchup.sources import ArrayDataSource
        import batchup.parallel.pool as P
        P.CLOSE_TIMEOUT = 0.5
        ds = ArrayDataSource([np.arange(20)]).map(functools.partial(T.crash_on, bad=4, how="block"))
        pool = WorkerThreadPool(2)
        t = time.monotonic()
        try:
            list(pool.parallel_data_source(ds, 2, timeout=1).batch_iterator(4))
        except BatchTimeoutError as e:
            print("TIMEOUT", round(time.monotonic() - t, 1), e)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            pool.close()
        print("WARN", [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)], flush=True)
        T.RELEASE.set()
    """)
    assert res.returncode == 0, res.stderr
    assert "TIMEOUT" in res.stdout and "batch 1 was not ready within timeout=1" in res.stdout
    assert float(res.stdout.split("TIMEOUT ")[1].split()[0]) < 4
    assert "batchup-thread-pool" in res.stdout.split("WARN")[1]


@pytest.mark.parametrize("how, exc", [("systemexit", "SystemExit"), ("keyboardinterrupt", "KeyboardInterrupt")])
def test_thread_pool_base_exception_reaches_consumer(how, exc):
    """A map function raising SystemExit/KeyboardInterrupt in a pool thread fails its batch (as serially),
    never leaves the consumer waiting; the pool stays usable."""
    res = run_child(f"""
        import functools, numpy as np, parallel_tasks as T
        from batchup.parallel import WorkerThreadPool
        from batchup.sources import ArrayDataSource
        ds = ArrayDataSource([np.arange(40)]).map(functools.partial(T.crash_on, bad=12, how={how!r}))
        with WorkerThreadPool(2) as pool:
            n = 0
            try:
                for b in pool.parallel_data_source(ds, 4).batch_iterator(4):
                    n += 1
            except BaseException as e:
                print("GOT", n, type(e).__name__, "batch 3" in str(e.__cause__))
            print("AGAIN", len(list(pool.parallel_data_source(ds.source, 4).batch_iterator(4))))
    """, timeout=30)
    assert res.returncode == 0, res.stderr
    assert f"GOT 3 {exc} True" in res.stdout
    assert "AGAIN 10" in res.stdout


@pytest.mark.parametrize("kind", ["thread", "process"])
@pytest.mark.parametrize("how", ["del", "break", "close"])
def test_abandoned_iterator_is_released(kind, how):
    """W8: dropping, breaking out of or closing an iterator cancels its prefetch; a user-owned pool stays usable."""
    ds = ArrayDataSource([np.arange(1000), np.arange(1000)])
    pool = WorkerThreadPool(2) if kind == "thread" else WorkerProcessPool(2)
    with pool:
        par = pool.parallel_data_source(ds, 8)
        it = par.batch_iterator(10)
        if how == "break":
            for i, _ in enumerate(it):
                if i == 2:
                    break
        else:
            for _ in range(3):
                next(it)
        if how == "close":
            it.close()
            assert list(it) == []
        del it
        gc.collect()
        assert len(list(par.batch_iterator(100))) == 10


def test_owned_pool_goes_with_its_source():
    """W8: a ds.prefetch() source that is dropped takes its workers with it (leak guard checks)."""
    par = ArrayDataSource([np.arange(100)]).prefetch(2)
    it = par.batch_iterator(10)
    next(it)
    del par, it
    gc.collect()


def test_consumer_exception_exits_cleanly():
    """W9: the consumer raises with the iterator in the traceback; the child exits quickly, workers gone."""
    res = run_child("""
        import numpy as np
        from batchup.sources import ArrayDataSource
        from batchup.parallel import WorkerProcessPool
        pool = WorkerProcessPool(2)
        print("PIDS", *pool.worker_pids(), flush=True)
        it = pool.parallel_data_source(ArrayDataSource([np.arange(100)]), 8).batch_iterator(5)
        for i, b in enumerate(it):
            if i == 2:
                raise RuntimeError("consumer failed")
    """, timeout=15)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1] == "RuntimeError: consumer failed"
    assert "leaked" not in res.stderr and "resource_tracker" not in res.stderr
    pids = [int(p) for p in res.stdout.split("PIDS")[1].split()]
    assert wait_gone(pids) == []


def test_ctrl_c():
    """W10: SIGINT gives one KeyboardInterrupt traceback, and the child exits having reaped its workers."""
    proc = start_child("""
        import functools, numpy as np, time
        from batchup.sources import ArrayDataSource
        from batchup.parallel import WorkerProcessPool
        import parallel_tasks as T
        pool = WorkerProcessPool(2)
        ds = ArrayDataSource([np.arange(10**6)]).map(functools.partial(T.crash_on, bad=-1, how="none"))
        print("PIDS", *pool.worker_pids(), flush=True)
        print("READY", flush=True)
        while True:
            for b in pool.parallel_data_source(ds, 8).batch_iterator(1000):
                time.sleep(0.001)
    """)
    first = proc.stdout.readline()
    assert proc.stdout.readline().strip() == "READY"
    pids = [int(p) for p in first.split()[1:]]
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode != 0
    assert err.count("KeyboardInterrupt") == 1, err
    assert wait_gone(pids) == []


def test_parent_sigkill_orphans_exit():
    """W11: workers of a SIGKILLed parent exit by themselves within 10 s; next pool sweeps its segments."""
    proc = start_child("""
        import os, signal, numpy as np
        from batchup.sources import ArrayDataSource
        from batchup.parallel import WorkerProcessPool
        pool = WorkerProcessPool(2)
        it = pool.parallel_data_source(ArrayDataSource([np.zeros((1000, 2000))]), 4).batch_iterator(10)
        next(it)
        print("PIDS", os.getpid(), *pool.worker_pids(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out, _ = proc.communicate(timeout=30)
    parent, *pids = [int(p) for p in out.split("PIDS")[1].split()]
    assert wait_gone(pids, 10) == []
    from batchup.parallel import _shm

    WorkerProcessPool(1).close()  # sweeps segments of dead parents
    assert not [n for n in os.listdir(_shm.shm_dir()) if n.startswith(f"batchup-{parent}-")]


def test_exit_without_close():
    """W12: falling off the end with a live pool exits 0 quickly with empty stderr and no children."""
    t = time.monotonic()
    res = run_child("""
        import numpy as np
        from batchup.sources import ArrayDataSource
        from batchup.parallel import WorkerProcessPool, WorkerThreadPool
        pool = WorkerProcessPool(2)
        tpool = WorkerThreadPool(2)
        print("PIDS", *pool.worker_pids(), flush=True)
        for p in (pool, tpool):
            it = p.parallel_data_source(ArrayDataSource([np.zeros((100, 3000))]), 8).batch_iterator(5)
            next(it), next(it)
    """, timeout=15)
    assert res.returncode == 0 and res.stderr == ""
    assert time.monotonic() - t < 10
    assert wait_gone([int(p) for p in res.stdout.split()[1:]]) == []


def test_thread_pool_worker_error_reaches_consumer_at_its_batch():
    """W1 (threads): batches 0-6 arrive, the 8th next() raises, the cause names the batch."""
    ds = ArrayDataSource([np.arange(100), np.arange(100)]).map(T.bad_batch)
    with WorkerThreadPool(2) as pool:
        it = pool.parallel_data_source(ds, 4).batch_iterator(10)
        got = []
        with pytest.raises(ValueError, match="bad 7") as info:
            for b in it:
                got.append(b)
        assert [b[0][0] for b in got] == [0, 10, 20, 30, 40, 50, 60]
        assert "batch 7" in str(info.value.__cause__) and "batchup-thread-pool" in str(info.value.__cause__)
        assert len(list(pool.parallel_data_source(ds.source, 4).batch_iterator(10))) == 10


@pytest.mark.parametrize("kind", ["thread", "fork", "spawn"])
def test_worker_error_bounds_the_map_calls(kind, monkeypatch):
    """W1: batches 0-6 intact, the 8th next() raises ValueError('bad 7') with the worker's traceback;
    the map ran at most 7 + buffer + workers times; the iterator ends; the pool runs a clean epoch."""
    import multiprocessing

    buffer, workers = 4, 2
    counter = multiprocessing.get_context("fork").Value("i", 0)
    # Set before the pool starts, so forked workers inherit it (a Value cannot be pickled to them).
    monkeypatch.setattr(T, "CALLS", counter if kind != "spawn" else None)
    ds = ArrayDataSource([np.arange(200), np.arange(200)]).map(T.counted_bad_batch)
    pool = WorkerThreadPool(workers) if kind == "thread" else WorkerProcessPool(workers, start_method=kind)
    with pool:
        it = pool.parallel_data_source(ds, buffer).batch_iterator(10)
        got = [next(it) for _ in range(7)]
        assert [b[0].tolist() for b in got] == [list(range(10 * k, 10 * k + 10)) for k in range(7)]
        start = time.monotonic()
        with pytest.raises(ValueError, match="bad 7") as info:
            next(it)
        assert time.monotonic() - start < 5
        assert info.value.args == ("bad 7",)
        cause = str(info.value.__cause__)
        assert "batch 7" in cause and 'raise ValueError(f"bad {bad}")' in cause
        assert ("batchup-thread-pool" if kind == "thread" else "in worker ") in cause
        assert list(it) == []
        clean = pool.parallel_data_source(ds.source, buffer)
        assert [b[0][0] for b in clean.batch_iterator(50)] == [0, 50, 100, 150]
        if kind != "spawn":
            # Every worker has drained its pipe by now (the clean epoch ran after the old tasks).
            assert 8 <= counter.value <= 7 + buffer + workers, counter.value


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_idle_workers_outlive_the_watchdog_period(method):
    """The parent-death watchdog of a forkserver/spawn worker does not mistake its own parent for a dead one."""
    from batchup.parallel import _worker

    with WorkerProcessPool(2, start_method=method) as pool:
        pids = pool.worker_pids()
        assert pool._apply_async(T.square, (3,)).get() == 9
        time.sleep(3 * _worker.WATCHDOG_PERIOD)
        assert pool.worker_pids() == pids
        assert pool._apply_async(T.square, (4,)).get() == 16


def test_two_threads_start_process_prefetchers_at_once():
    """Two threads each start a process prefetcher at the same moment in a fresh interpreter, while a third
    imports a module the workers need: with the default start method every epoch completes (no fork while
    another thread holds an import lock)."""
    res = run_child("""
        import threading, time
        import numpy as np
        from batchup.sources import ArrayDataSource
        import parallel_tasks as T

        importer = threading.Thread(target=lambda: __import__("slow_import_mod"))
        importer.start()
        time.sleep(0.3)  # it now holds slow_import_mod's import lock for ~2 s
        ds = ArrayDataSource([np.arange(100)]).map(T.use_slow_module)
        out, methods = [], []
        barrier = threading.Barrier(2)

        def run():
            barrier.wait()
            with ds.prefetch(2) as par:
                methods.append(par.pool.start_method)
                out.append(sum(int(b[0].sum()) for b in par.batch_iterator(10)))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads + [importer]:
            t.join()
        print("OUT", out, sorted(methods))
    """, timeout=90)
    assert res.returncode == 0, res.stderr
    assert "OUT [9900, 9900] ['forkserver', 'forkserver']" in res.stdout, res.stdout


def test_default_start_method_follows_the_threads():
    """fork when alone (NumPy's BLAS threads do not count), forkserver beside another Python thread;
    a source that cannot be pickled then says why forkserver was chosen."""
    res = run_child("""
        import threading, numpy as np
        from batchup.parallel import WorkerProcessPool
        from batchup.sources import ArrayDataSource
        with WorkerProcessPool(1) as p:
            print("ALONE", p.start_method)
        with WorkerProcessPool(1) as p, WorkerProcessPool(1) as q:
            print("BESIDE_OUR_POOL", q.start_method)
        ev = threading.Event()
        t = threading.Thread(target=ev.wait, name="progress-bar")
        t.start()
        with WorkerProcessPool(1) as p:
            print("THREAD", p.start_method)
            try:
                p.parallel_data_source(ArrayDataSource([np.arange(3)]).map(lambda x: (x,)))
            except TypeError as e:
                print("WHY", e)
        with WorkerProcessPool(1, start_method="fork") as p:
            print("EXPLICIT", p.start_method)
        ev.set()
    """)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "ALONE fork" in out and "BESIDE_OUR_POOL fork" in out and "EXPLICIT fork" in out, out
    assert "THREAD forkserver" in out, out
    assert "other threads run in this process" in out and "'progress-bar'" in out and "start_method='fork'" in out


def test_bogus_start_method_is_rejected_for_every_pool_kind():
    """start_method='bogus' is a ValueError for processes, and through check_start_method for threads and 0
    workers (the prefetch front door calls it before choosing a pool)."""
    from batchup.parallel import _start_method
    from batchup.parallel.process_pool import WorkerProcessPool

    with pytest.raises(ValueError, match=r"start_method must be None or one of .*'bogus'"):
        WorkerProcessPool(1, start_method="bogus")
    for bad in ("bogus", 3, ""):
        with pytest.raises(ValueError, match="start_method"):
            _start_method.check_start_method(bad)
    _start_method.check_start_method(None)


@pytest.mark.parametrize("workers, kind", [(2, "thread"), (0, "process")])
def test_prefetch_rejects_bogus_start_method(workers, kind):
    with pytest.raises(ValueError, match="start_method"):
        ArrayDataSource([np.arange(4)]).prefetch(workers, kind=kind, start_method="bogus").close()


def test_process_pool_inside_a_process_worker_is_a_clear_error():
    """A task that creates a process pool gets a RuntimeError that says what to use instead."""
    res = run_child("""
        import parallel_tasks as T
        from batchup.parallel import WorkerProcessPool
        with WorkerProcessPool(1) as pool:
            print(pool._apply_async(T.nested_pool, (0,)).get())
    """)
    assert res.returncode == 0, res.stderr
    assert "RuntimeError: a WorkerProcessPool cannot be created inside a worker process" in res.stdout
    assert "WorkerThreadPool" in res.stdout


def test_a_bad_sample_each_epoch_does_not_break_the_pool():
    """A sample that kills a fresh worker every epoch fails that epoch only; once fixed, the pool works."""
    res = run_child("""
        import functools, numpy as np, parallel_tasks as T
        from batchup.parallel import WorkerProcessPool, WorkerCrashedError
        from batchup.sources import ArrayDataSource
        bad = ArrayDataSource([np.arange(40)]).map(functools.partial(T.crash_on, bad=0, how="segv"))
        with WorkerProcessPool(1) as pool:
            for epoch in range(6):
                try:
                    list(pool.parallel_data_source(bad, 1).batch_iterator(4))
                except WorkerCrashedError as e:
                    print("EPOCH", epoch, "SIGSEGV" in str(e))
            print("FIXED", len(list(pool.parallel_data_source(bad.source, 1).batch_iterator(4))))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("True") == 6, res.stdout
    assert "FIXED 10" in res.stdout


def test_workers_that_cannot_start_break_the_pool_with_a_fork_message():
    """Workers dying while starting (2n+1 in a row) stop the pool; under fork the message does not
    blame spawn/forkserver."""
    res = run_child("""
        import os, parallel_tasks as T
        from batchup.parallel import WorkerProcessPool, WorkerCrashedError, _worker
        _worker.process_main = lambda *a: os._exit(3)  # inherited by the forked workers
        with WorkerProcessPool(1, start_method="fork") as pool:
            for i in range(5):
                try:
                    pool._apply_async(T.square, (i,)).get(timeout=20)
                except WorkerCrashedError as e:
                    last = str(e)
            print("LAST", last)
    """)
    assert res.returncode == 0, res.stderr
    last = res.stdout.split("LAST ")[1]
    assert "died while starting" in last and "exited with code 3" in last, last
    assert "forkserver" not in last and "spawn" not in last
