"""ParallelDataSource and ds.prefetch: identical batches, seeds, resume (reliability D1, D3, D5, W18)."""
from __future__ import annotations

import json

import numpy as np
import parallel_tasks as T
import pytest
from helpers import assert_batches_equal, assert_resumes, stream

from batchup import data_source, work_pool
from batchup.parallel import InlinePool, ParallelBatchIterator, WorkerProcessPool, WorkerThreadPool
from batchup.sources import ArrayDataSource, CompositeDataSource

N = 23


def make_pool(kind):
    if kind == "inline":
        return InlinePool()
    if kind == "thread1":
        return WorkerThreadPool(1)
    if kind == "thread2":
        return WorkerThreadPool(2)
    if kind == "fork2":
        return WorkerProcessPool(2, start_method="fork")
    return WorkerProcessPool(2, start_method="spawn")


def make_ds(repeats=1):
    X = np.arange(N * 3, dtype=np.int64).reshape(N, 3)
    y = np.arange(N) * 3 + 1
    return ArrayDataSource([X, y], repeats=repeats)


@pytest.fixture(scope="module")
def pools():
    ps = {k: make_pool(k) for k in ("inline", "thread1", "thread2", "fork2", "spawn2")}
    yield ps
    for p in ps.values():
        p.close()


@pytest.mark.parametrize("kind", ["inline", "thread1", "thread2", "fork2", "spawn2"])
@pytest.mark.parametrize("shuffle", [None, 0])
@pytest.mark.parametrize("repeats", [1, 3])
@pytest.mark.parametrize("bs", [1, 7, N, N + 3])
def test_identical_to_serial(pools, kind, shuffle, repeats, bs):
    """D1: every pool gives exactly the serial batches, order included."""
    ds = make_ds(repeats)
    ref = stream(ds.batch_iterator(bs, shuffle=shuffle))
    par = pools[kind].parallel_data_source(ds, 4)
    assert_batches_equal(stream(par.batch_iterator(bs, shuffle=shuffle)), ref)


@pytest.mark.parametrize("kind", ["thread2", "fork2"])
def test_random_state_advances_identically(pools, kind):
    """D3: a RandomState is drawn in the caller only, exactly as in the serial run."""
    ds = make_ds(2)
    rs_serial, rs_par = np.random.RandomState(5), np.random.RandomState(5)
    ref = stream(ds.batch_iterator(4, shuffle=rs_serial))
    got = stream(pools[kind].parallel_data_source(ds, 6).batch_iterator(4, shuffle=rs_par))
    assert_batches_equal(got, ref)
    assert rs_serial.randint(1 << 30) == rs_par.randint(1 << 30)


def test_generator_shuffle(pools):
    ds = make_ds()
    ref = stream(ds.batch_iterator(5, shuffle=np.random.default_rng(3)))
    got = stream(pools["fork2"].parallel_data_source(ds, 3).batch_iterator(5, shuffle=np.random.default_rng(3)))
    assert_batches_equal(got, ref)


@pytest.mark.parametrize("kind", ["inline", "thread2", "fork2", "spawn2"])
def test_seeded_map_gets_per_batch_generator(pools, kind):
    """W18: a seeded map draws from (seed, batch number), identical for any worker count."""
    ds = make_ds(2).map(T.add_noise, seed=11)
    ref = stream(ds.batch_iterator(4, shuffle=1))
    got = stream(pools[kind].parallel_data_source(ds, 5).batch_iterator(4, shuffle=1))
    assert_batches_equal(got, ref)
    noise = [b[0] - make_ds(2).samples_by_indices_nomapping(b[1] // 3)[0] for b in got]
    assert not all(np.array_equal(noise[0], n) for n in noise[1:])


def test_global_rng_differs_across_forked_workers():
    """W18: forked workers reseed the global RNGs, so np.random draws are not duplicated."""
    ds = ArrayDataSource([np.arange(40)]).map(T.global_draw)
    with WorkerProcessPool(2) as p:
        draws = [b[0][0] for b in p.parallel_data_source(ds, 8).batch_iterator(1)]
    assert len(set(draws)) == len(draws)


def test_composite_source(pools):
    lab = ArrayDataSource([np.arange(5)], repeats=-1)
    unlab = ArrayDataSource([np.arange(100, 117)])
    ds = CompositeDataSource([lab, unlab])
    ref = stream(ds.batch_iterator(4, shuffle=9))
    got = stream(pools["fork2"].parallel_data_source(ds, 4).batch_iterator(4, shuffle=9))
    assert_batches_equal(got, ref)


@pytest.mark.parametrize("kind", ["inline", "thread2", "fork2"])
@pytest.mark.parametrize("shuffle", [None, 4, "rs"])
def test_resume_records_consumed_batches(pools, kind, shuffle):
    """D5: restoring at every step gives the uninterrupted tail (the shared harness)."""
    ds = make_ds(2).map(T.add_noise, seed=3)

    def make():
        sh = np.random.RandomState(8) if shuffle == "rs" else shuffle
        return pools[kind].parallel_data_source(ds, 3).batch_iterator(5, shuffle=sh)

    assert_resumes(make, every=2)


def test_resume_with_another_worker_count(pools):
    """D5: a state saved with 2 process workers loads into 1 thread or the serial twin, same tail."""
    ds = make_ds(3)
    it = pools["fork2"].parallel_data_source(ds, 6).batch_iterator(4, shuffle=2)
    head = stream(it, 5)
    state = json.loads(json.dumps(it.state_dict()))
    tail = stream(it)
    for kind in ("thread1", "inline"):
        fresh = pools[kind].parallel_data_source(ds, 2).batch_iterator(4, shuffle=2)
        fresh.load_state_dict(state)
        assert_batches_equal(stream(fresh), tail)
    assert len(head) == 5 and state["inner"]["position"] == 5
    serial = ds.batch_iterator(4, shuffle=2)
    serial.load_state_dict(state)  # a prefetching state is a serial state: same form
    assert_batches_equal(stream(serial), tail)


def test_state_after_an_error_resumes_at_the_failed_batch(pools):
    """D2: after a worker error the state points at the batch that failed."""
    ds = ArrayDataSource([np.arange(100), np.arange(100)]).map(T.bad_batch)
    it = pools["fork2"].parallel_data_source(ds, 4).batch_iterator(10)
    got = []
    with pytest.raises(ValueError, match="bad 7"):
        for b in it:
            got.append(b)
    assert len(got) == 7 and stream(it) == []
    assert it.state_dict()["inner"]["position"] == 7


def test_len_and_remaining(pools):
    it = pools["thread2"].parallel_data_source(make_ds(), 4).batch_iterator(5)
    assert len(it) == 5
    next(it)
    assert len(it) == 4 and it.remaining() == 4
    assert isinstance(it, ParallelBatchIterator)


def test_num_samples_and_map_methods(pools):
    par = pools["thread2"].parallel_data_source(make_ds(), 4)
    assert par.num_samples() == N
    assert not par.is_random_access
    (out,) = par.batch_map_concat(lambda X, y: (y * 2,), 5)
    assert out.tolist() == (np.arange(N) * 6 + 2).tolist()


class TestPrefetchFrontDoor:
    @pytest.mark.parametrize("kind", ["process", "thread"])
    def test_same_batches_as_serial_twin(self, kind):
        """ds.prefetch(num_workers=2) yields what num_workers=0 (the serial twin) yields."""
        ds = make_ds(2).map(T.add_noise, seed=1)
        with ds.prefetch(num_workers=0) as serial, ds.prefetch(num_workers=2, kind=kind, buffer_size=3) as par:
            assert isinstance(serial.pool, InlinePool)
            assert_batches_equal(stream(par.batch_iterator(6, shuffle=5)), stream(serial.batch_iterator(6, shuffle=5)))

    def test_owns_and_closes_its_pool(self):
        par = make_ds().prefetch(2)
        assert len(stream(par.batch_iterator(4))) == 6
        par.close()
        assert par.pool.closed

    @pytest.mark.parametrize("bad, err", [(-1, ValueError), (1.5, TypeError)])
    def test_bad_num_workers(self, bad, err):
        with pytest.raises(err, match="num_workers"):
            make_ds().prefetch(bad)

    def test_bad_kind(self):
        with pytest.raises(ValueError, match="kind"):
            make_ds().prefetch(2, kind="gpu")

    def test_non_random_access_starts_nothing(self):
        with pytest.raises(TypeError, match="random access"):
            data_source.IteratorDataSource(iter([])).prefetch(2)


class TestBatchUpReadmeParallelExamples:
    """The 'parallel processing' examples of the BatchUp README, as written."""

    @pytest.fixture
    def disk_ds(self, tmp_path):
        paths = []
        for i in range(40):
            p = str(tmp_path / f"{'dog' if i % 3 else 'cat'}_{i}.npy")
            np.save(p, np.full((2, 4, 4), i, dtype=np.float32))
            paths.append(p)
        train_X = T.LoadFromDisk(paths)
        train_y = np.array([1 if "dog" in p.rsplit("/", 1)[1] else 0 for p in paths], dtype=np.int32)
        return data_source.ArrayDataSource([train_X, train_y])

    def test_threads(self, disk_ds):
        ds = disk_ds
        th_pool = work_pool.WorkerThreadPool(processes=4)
        par_ds = th_pool.parallel_data_source(ds, batch_buffer_size=32)
        par_iter = par_ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345))
        got = []
        for (batch_X, batch_y) in par_iter:
            got.append((batch_X, batch_y))
        ref = list(ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345)))
        assert_batches_equal(got, ref)
        th_pool.close()

    def test_processes(self, disk_ds):
        ds = disk_ds
        proc_pool = work_pool.WorkerProcessPool(processes=4)
        par_ds = proc_pool.parallel_data_source(ds, batch_buffer_size=32)
        got = [(bX, by) for (bX, by) in par_ds.batch_iterator(batch_size=16, shuffle=np.random.RandomState(12345))]
        ref = list(ds.batch_iterator(batch_size=16, shuffle=np.random.RandomState(12345)))
        assert_batches_equal(got, ref)
        proc_pool.close()


def test_kept_batches_never_change():
    """P14: batches kept by the caller stay intact while later batches are produced and after close."""
    ds = ArrayDataSource([np.arange(200 * 600, dtype=np.float64).reshape(200, 600)])
    ref = stream(ds.batch_iterator(10, shuffle=4))
    with WorkerProcessPool(2) as pool:
        kept = stream(pool.parallel_data_source(ds, 3).batch_iterator(10, shuffle=4))
        kept[0][0][...] += 0  # writable
    assert_batches_equal(kept, ref)
