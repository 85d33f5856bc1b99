"""Pools and work streams: contract, ordering, errors, lifecycle (reliability W1-W4, W7, W13, W19, rows 32-37)."""
from __future__ import annotations

import operator
import os
import threading
import time

import numpy as np
import parallel_tasks as T
import pytest

from batchup import work_pool
from batchup.parallel import (
    BatchTimeoutError,
    InlinePool,
    PoolClosedError,
    RemoteTraceback,
    WorkerError,
    WorkerProcessPool,
    WorkerThreadPool,
)
from batchup.sources import ArrayDataSource, IteratorDataSource

POOLS = {
    "inline": lambda: InlinePool(),
    "thread": lambda: WorkerThreadPool(processes=2),
    "process": lambda: WorkerProcessPool(processes=2),
}


@pytest.fixture(params=["thread", "process"])
def pool(request):
    p = POOLS[request.param]()
    yield p
    p.close()


@pytest.fixture(params=["inline", "thread", "process"])
def any_pool(request):
    p = POOLS[request.param]()
    yield p
    p.close()


class TestConstruction:
    @pytest.mark.parametrize("cls", [WorkerThreadPool, WorkerProcessPool])
    @pytest.mark.parametrize("bad", [0, -1])
    def test_processes_must_be_positive(self, cls, bad):
        """Row 32: processes=0 or -1 is a ValueError naming the argument."""
        with pytest.raises(ValueError, match="processes.*>= 1"):
            cls(processes=bad)

    @pytest.mark.parametrize("cls", [WorkerThreadPool, WorkerProcessPool])
    @pytest.mark.parametrize("bad", [2.0, True, "2"])
    def test_processes_must_be_int(self, cls, bad):
        """Row 33: a float, bool or str worker count is a TypeError."""
        with pytest.raises(TypeError, match="processes"):
            cls(processes=bad)

    def test_bogus_start_method(self):
        """Row 34: an unknown start method lists the valid ones."""
        with pytest.raises(ValueError, match="start_method.*fork"):
            WorkerProcessPool(2, start_method="bogus")

    def test_oversized_pool_warns(self):
        """W19: more than 4 x CPUs warns."""
        with pytest.warns(UserWarning, match="4 x"):
            p = WorkerThreadPool(processes=4 * (os.cpu_count() or 1) + 1)
        p.close()

    def test_processes_positional_and_facade_names(self):
        """The BatchUp 0.2 names are reachable from batchup.work_pool."""
        for name in ("AbstractWorkerPool", "WorkerThreadPool", "WorkerProcessPool", "WorkStream", "ParallelDataSource"):
            assert hasattr(work_pool, name)
        with work_pool.WorkerThreadPool(3) as p:
            assert p.processes == 3
            assert isinstance(p, work_pool.AbstractWorkerPool)

    def test_abstract_pool_methods(self):
        p = work_pool.AbstractWorkerPool()
        with pytest.raises(NotImplementedError):
            p.shared_constant(1)
        with pytest.raises(NotImplementedError):
            p._apply_async(operator.add, (1, 2))


class TestWorkStream:
    def test_results_in_submission_order(self, any_pool):
        tasks = ((T.sleep_then, (i, 0.01 * ((7 * i) % 3))) for i in range(20))
        stream = any_pool.work_stream(tasks, task_buffer_size=5)
        assert list(stream.retrieve_iter()) == list(range(20))
        assert stream.retrieve() is None

    def test_retrieve_returns_none_when_done(self, pool):
        stream = work_pool.WorkStream(pool, iter([(T.square, (3,))]), 4)
        assert stream.retrieve() == 9
        assert stream.retrieve() is None

    def test_task_forms(self, any_pool):
        """(fn,), (fn, args) and (fn, args, kwargs) all work."""
        stream = any_pool.work_stream(iter([(os.getpid,), (T.square, (4,)), (T.sleep_then, (5,), {"seconds": 0})]))
        got = list(stream.retrieve_iter())
        assert got[1:] == [16, 5] and isinstance(got[0], int)

    def test_construction_submits_the_buffer(self):
        """Construction submits until task_buffer_size are outstanding."""
        pulled = []

        def gen():
            for i in range(100):
                pulled.append(i)
                yield (T.square, (i,))

        with WorkerThreadPool(2) as p:
            stream = p.work_stream(gen(), task_buffer_size=7)
            assert len(pulled) == 7
            stream.retrieve()
            assert len(pulled) == 8
            stream.close()

    @pytest.mark.parametrize("bad", [0, -3])
    def test_bad_buffer_size(self, pool, bad):
        """Row 35: buffer size 0 or negative is a ValueError."""
        with pytest.raises(ValueError, match="task_buffer_size"):
            pool.work_stream(iter([]), task_buffer_size=bad)
        with pytest.raises(ValueError, match="batch_buffer_size"):
            pool.parallel_data_source(ArrayDataSource([np.arange(3)]), batch_buffer_size=bad)

    def test_bad_timeout(self, pool):
        with pytest.raises(ValueError, match="timeout"):
            pool.work_stream(iter([]), timeout=-1)

    def test_not_a_pool(self):
        with pytest.raises(TypeError, match="worker_pool"):
            work_pool.WorkStream(object(), iter([]))

    def test_every_thread_runs_tasks(self):
        """Buffered tasks really run at the same time: every worker thread gets work."""
        names = set()
        barrier = threading.Barrier(2, timeout=10)

        def task(i):
            names.add(threading.current_thread().name)
            if i < 2:
                barrier.wait()
            return i

        with WorkerThreadPool(2) as p:
            assert list(p.work_stream((task, (i,)) for i in range(20)).retrieve_iter()) == list(range(20))
        assert len(names) == 2

    def test_every_process_runs_tasks(self):
        """A long stream of tiny tasks reaches every worker process (all started at construction)."""
        with WorkerProcessPool(2) as p:
            pids = set(p.work_stream((T.pid_of, (i,)) for i in range(60)).retrieve_iter())
            assert pids == set(p.worker_pids())


class TestErrors:
    def test_same_type_and_traceback_cause(self, any_pool):
        """W1: a worker exception arrives as its own type with the worker traceback as __cause__."""
        stream = any_pool.work_stream((T.fail_on, (i, 7)) for i in range(20))
        got = []
        with pytest.raises(ValueError, match="bad 7") as info:
            for v in stream.retrieve_iter():
                got.append(v)
        assert got == list(range(7))
        if not isinstance(any_pool, InlinePool):
            cause = info.value.__cause__
            assert isinstance(cause, RemoteTraceback)
            assert "task 7" in str(cause) and 'raise ValueError(f"bad {x}")' in str(cause)
        assert stream.retrieve() is None  # the stream ended
        assert list(any_pool.work_stream((T.square, (i,)) for i in range(3)).retrieve_iter()) == [0, 1, 4]

    @pytest.mark.parametrize("fn", [T.raise_two_arg, T.raise_locked])
    def test_unrebuildable_exception(self, fn):
        """W2: an exception the parent cannot rebuild becomes a WorkerError naming the class."""
        cls = T.TwoArgError if fn is T.raise_two_arg else T.LockedError
        with WorkerProcessPool(2) as p:
            with pytest.raises(Exception) as info:
                p._apply_async(fn, (1,)).get()
            err = info.value
            # Some libraries (tblib, imported by dask) teach pickle to rebuild any exception;
            # then the original type arrives, otherwise a WorkerError naming it.
            assert isinstance(err, WorkerError) and cls.__name__ in str(err) or type(err) is cls
            assert type(err.__cause__) is RemoteTraceback
            assert fn.__name__ in str(err.__cause__)

    def test_unpicklable_result(self):
        """W3: a result that cannot be pickled is a WorkerError; the pool stays usable."""
        with WorkerProcessPool(2) as p:
            with pytest.raises(WorkerError, match="result of task 0 could not be pickled"):
                p.work_stream(iter([(T.return_lambda, (1,))])).retrieve()
            assert p._apply_async(T.square, (3,)).get() == 9

    def test_unpicklable_task_under_spawn(self):
        """W4: a lambda task is a TypeError at submission saying picklable and module level."""
        with WorkerProcessPool(1, start_method="spawn") as p:
            with pytest.raises(TypeError, match="picklable.*module level"):
                p._apply_async(lambda: 0, ())

    def test_unpicklable_source_under_spawn(self):
        """W4: a source mapped with a lambda fails at parallel_data_source() under spawn."""
        ds = ArrayDataSource([np.arange(10)]).map(lambda x: (x,))
        with WorkerProcessPool(1, start_method="forkserver") as p:
            with pytest.raises(TypeError, match="picklable.*module level"):
                p.parallel_data_source(ds)

    def test_process_timeout(self):
        """W7: a batch over the timeout raises BatchTimeoutError naming it; the worker is replaced."""
        with WorkerProcessPool(2) as p:
            before = p.worker_pids()
            stream = p.work_stream(((T.sleep_then, (i, 3600 if i == 1 else 0)) for i in range(4)), timeout=1)
            assert stream.retrieve() == 0
            with pytest.raises(BatchTimeoutError, match="task 1.*timeout=1"):
                stream.retrieve()
            assert stream.retrieve() is None
            assert p._apply_async(T.square, (5,)).get() == 25
            deadline = time.monotonic() + 5
            while p.worker_pids() == before and time.monotonic() < deadline:
                time.sleep(0.02)
            assert p.worker_pids() != before


class TestLifecycle:
    def test_close_is_idempotent_and_final(self, any_pool):
        """W13 / row 37: double close is fine; any use after close raises PoolClosedError."""
        any_pool.close()
        any_pool.close()
        assert any_pool.closed
        with pytest.raises(PoolClosedError):
            any_pool.shared_constant(1)
        with pytest.raises(PoolClosedError):
            any_pool._apply_async(T.square, (1,))
        with pytest.raises(PoolClosedError):
            any_pool.work_stream(iter([]))
        with pytest.raises(PoolClosedError):
            any_pool.parallel_data_source(ArrayDataSource([np.arange(3)]))

    def test_interleaved_streams_and_epochs(self, pool):
        """W13: two interleaved streams stay independent; five epochs keep worker pids, fds, threads flat."""
        a = pool.work_stream((T.square, (i,)) for i in range(10))
        b = pool.work_stream((T.square, (-i - 100,)) for i in range(10))
        got_a, got_b = [], []
        for _ in range(10):
            got_a.append(a.retrieve())
            got_b.append(b.retrieve())
        assert got_a == [i * i for i in range(10)]
        assert got_b == [(i + 100) ** 2 for i in range(10)]
        ds = ArrayDataSource([np.arange(50)])
        par = pool.parallel_data_source(ds, 4)
        pids = getattr(pool, "worker_pids", list)()
        fds = []
        for epoch in range(5):
            out = np.concatenate([b[0] for b in par.batch_iterator(7, shuffle=epoch)])
            assert sorted(out.tolist()) == list(range(50))
            fds.append(len(os.listdir("/proc/self/fd")))
            assert getattr(pool, "worker_pids", list)() == pids
        assert max(fds) - min(fds) <= 2

    def test_pool_closed_by_gc(self):
        """A dropped pool closes itself (the leak guard checks workers and threads are gone)."""
        p = WorkerProcessPool(2)
        assert p._apply_async(T.square, (2,)).get() == 4
        del p

    def test_closing_pool_fails_outstanding(self):
        p = WorkerThreadPool(1)
        started = threading.Event()

        def slow():
            started.set()
            return T.sleep_then(1, 0.3)

        fut = p._apply_async(slow, ())
        assert started.wait(10)
        futs = [p._apply_async(T.square, (i,)) for i in range(3)]
        p.close()
        assert fut.get() == 1
        with pytest.raises(PoolClosedError):
            futs[-1].get()


class TestSharedConstant:
    def test_thread_pool_returns_the_object(self):
        x = object()
        with WorkerThreadPool(1) as p:
            assert p.shared_constant(x) is x

    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_process_constant_reaches_tasks(self, method):
        """A marker as a top-level argument arrives as the plain value; big arrays included."""
        big = np.arange(300_000, dtype=np.float64)  # 2.4 MB: shared, not pickled per task
        with WorkerProcessPool(2, start_method=method) as p:
            c = p.shared_constant(big)
            got = list(p.work_stream((np.sum, (c,)) for _ in range(4)).retrieve_iter())
            assert got == [big.sum()] * 4

    def test_snapshot_semantics(self):
        """W14: workers keep the value shared at shared_constant() time."""
        X = np.zeros(10, dtype=np.int64)
        ds = ArrayDataSource([X])
        with WorkerProcessPool(2) as p:
            par = p.parallel_data_source(ds, 4)
            first = np.concatenate([b[0] for b in par.batch_iterator(5)])
            X[0] = 99
            second = np.concatenate([b[0] for b in par.batch_iterator(5)])
            assert first[0] == 0 and second[0] == 0

    def test_parallel_source_rejects_bad_sources(self, pool):
        """Row 36: a non-random-access source or a non-source is a TypeError."""
        with pytest.raises(TypeError, match="random access"):
            pool.parallel_data_source(IteratorDataSource(iter([])))
        with pytest.raises(TypeError, match="data source"):
            pool.parallel_data_source([np.arange(3)])


class TestSlots:
    """Results travel through slot files mapped once per process; messages take the direct or the sender path."""

    def test_growing_results_and_kept_batches(self):
        """Results that grow (slot files and their mappings grow) stay intact, kept ones included."""
        sizes = [10, 5000, 600, 200_000, 40, 1_000_000, 3000, 70_000] * 3
        with WorkerProcessPool(2) as p:
            stream = p.work_stream(((T.sized, (n, k)) for k, n in enumerate(sizes)), task_buffer_size=3)
            kept = {}
            for k, arr in enumerate(stream.retrieve_iter()):
                assert arr.shape == (sizes[k],) and (arr == k).all()
                if k % 3 == 0:
                    kept[k] = arr  # the others are dropped, so their files are reused
                    arr[:1] = k  # writable, private to the caller
            for k, arr in kept.items():
                assert (arr == k).all(), k

    def test_large_and_small_messages_keep_their_order(self):
        """Tasks with large arguments (sent by the sender thread) and small ones (sent directly) stay in order."""
        big = [np.full(5000, i, dtype=np.float64) for i in range(6)]  # 40 KB each: past DIRECT_MAX
        tasks = []
        for i in range(30):
            arr = big[i % 6] if i % 4 == 0 else np.full(3, i, dtype=np.float64)
            tasks.append((T.total, (arr, i)))
        expect = [float(a.sum()) + k for k, (_, (a, _)) in enumerate(tasks)]
        with WorkerProcessPool(2) as p:
            const = p.shared_constant(list(range(20_000)))  # a pickled constant past DIRECT_MAX
            assert list(p.work_stream(iter(tasks), task_buffer_size=5).retrieve_iter()) == expect
            assert list(p.work_stream((len, (const,)) for _ in range(6)).retrieve_iter()) == [20_000] * 6

    def test_workers_unmap_a_closed_streams_slots(self):
        """Once a stream is closed its slot files are removed and no worker keeps them mapped."""
        ds = ArrayDataSource([np.ones((400, 1000))])
        with WorkerProcessPool(2) as p:
            par = p.parallel_data_source(ds, 4)
            for _ in range(2):
                it = par.batch_iterator(20)
                next(it), next(it)
                it.close()
            pids = p.worker_pids()
            deadline = time.monotonic() + 5
            while True:
                mapped = []
                for pid in pids:
                    with open(f"/proc/{pid}/maps") as f:
                        mapped += [ln for ln in f if "batchup-" in ln and "(deleted)" in ln]
                if not mapped or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert mapped == []

    def test_workers_forked_later_do_not_inherit_the_parents_slots(self):
        """A generation forked while the parent maps slot files does not pin them (MADV_DONTFORK)."""
        with WorkerProcessPool(2, start_method="fork") as p:  # the default depends on this process's threads
            it = p.parallel_data_source(ArrayDataSource([np.ones((400, 1000))]), 4).batch_iterator(20)
            kept = [next(it), next(it)]  # the parent now maps slot files
            writers = set(p.worker_pids())  # they map the slots they write, legitimately
            p.shared_constant(np.zeros(300_000))  # large: forks a new generation that inherits it
            new = set(p.worker_pids()) - writers
            assert len(new) == 2
            for pid in new:
                with open(f"/proc/{pid}/maps") as f:
                    assert not [ln for ln in f if f"batchup-{os.getpid()}-slot" in ln]
            assert len(kept) == 2
            it.close()
