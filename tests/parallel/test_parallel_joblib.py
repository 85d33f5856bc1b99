"""JoblibWorkerPool: the active joblib backend runs batch preparation (threading, loky, Dask)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import joblib
import numpy as np
import pytest
from helpers import assert_batches_equal, stream

from batchup.parallel import JoblibWorkerPool
from batchup.sources import ArrayDataSource


def _ds():
    X = np.arange(60 * 4).reshape(60, 4)
    return ArrayDataSource([X, np.arange(60)], repeats=2)


def _double(x):
    return 2 * x


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_local_backends_give_serial_batches(backend):
    ds = _ds()
    with joblib.parallel_config(backend=backend, n_jobs=2):
        pool = JoblibWorkerPool()
    with pool:
        assert pool.num_workers == 2
        got = stream(pool.parallel_data_source(ds, 6).batch_iterator(7, shuffle=3))
    if backend == "loky":
        # loky keeps its (joblib-owned) workers for reuse; stop them for the leak guard.
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    assert_batches_equal(got, stream(ds.batch_iterator(7, shuffle=3)))


def test_worker_error_same_type():
    with joblib.parallel_config(backend="threading", n_jobs=2):
        pool = JoblibWorkerPool()
    with pool:
        stream_ = pool.work_stream((int, (s,)) for s in ["1", "2", "x", "4"])
        assert stream_.retrieve() == 1 and stream_.retrieve() == 2
        with pytest.raises(ValueError, match="invalid literal") as info:
            stream_.retrieve()
        assert "task 2" in str(info.value.__cause__)


def _cluster_kwargs(tmp):
    return dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, local_directory=str(tmp))


@pytest.fixture(scope="module")
def dask_client(tmp_path_factory):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(**_cluster_kwargs(tmp_path_factory.mktemp("dask")))
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_dask_local_cluster(dask_client):
    """With parallel_config(backend='dask') the batches are made on the cluster, identical to serial."""
    ds = _ds()
    with joblib.parallel_config(backend="dask"):
        pool = JoblibWorkerPool()
    with pool:
        assert pool.backend_name == "DaskDistributedBackend" and pool.num_workers == 2
        got = stream(pool.parallel_data_source(ds, 4).batch_iterator(8, shuffle=np.random.RandomState(2)))
        pids = set(pool.work_stream((os.getpid,) for _ in range(20)).retrieve_iter())
    assert_batches_equal(got, stream(ds.batch_iterator(8, shuffle=np.random.RandomState(2))))
    assert os.getpid() not in pids


@pytest.mark.slow
def test_dask_error_reaches_consumer(dask_client):
    with joblib.parallel_config(backend="dask"):
        pool = JoblibWorkerPool()
    with pool:
        s = pool.work_stream((int, (v,)) for v in ["3", "nope"])
        assert s.retrieve() == 3
        with pytest.raises(ValueError, match="nope"):
            s.retrieve()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cli(tmp_path):
    distributed = pytest.importorskip("distributed")
    dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    if dask is None:
        pytest.skip("the dask command is not installed")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DASK_TEMPORARY_DIRECTORY=str(tmp_path))
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    worker = subprocess.Popen([dask, "worker", addr, "--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1",
                               "--no-dashboard", "--local-directory", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    client = None
    try:
        deadline = time.monotonic() + 30
        while client is None:
            try:
                client = distributed.Client(addr, timeout=2)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client.wait_for_workers(2, timeout=30)
        yield client
    finally:
        if client is not None:
            try:
                client.shutdown()  # stops the scheduler and its workers
            except Exception:  # noqa: BLE001 - fall back to signals below
                client.close()
        for p in (worker, sched):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.terminate()
        for p in (worker, sched):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_dask_scheduler_and_workers_as_processes(dask_cli):
    """The same code runs against `dask scheduler` + `dask worker` started separately on 127.0.0.1."""
    ds = _ds()
    with joblib.parallel_config(backend="dask"):
        pool = JoblibWorkerPool()
    with pool:
        got = stream(pool.parallel_data_source(ds, 4).batch_iterator(9, shuffle=5))
    assert_batches_equal(got, stream(ds.batch_iterator(9, shuffle=5)))


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_close_fails_queued_tasks(backend):
    """close() fails every task still queued or running with PoolClosedError: retrieve_iter() never blocks."""
    from conftest import run_child

    res = run_child(f"""
        import joblib, time, parallel_tasks as T
        from batchup.parallel import JoblibWorkerPool, PoolClosedError
        with joblib.parallel_config(backend={backend!r}, n_jobs=1):
            pool = JoblibWorkerPool(window=1)
        stream = pool.work_stream(((T.sleep_then, (i, 0.3)) for i in range(8)), task_buffer_size=8)
        print("FIRST", stream.retrieve(), flush=True)
        pool.close()
        t = time.monotonic()
        try:
            print("REST", list(stream.retrieve_iter()))
        except PoolClosedError as e:
            print("CLOSED", round(time.monotonic() - t, 1), e)
    """, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "FIRST 0" in res.stdout and "CLOSED" in res.stdout, res.stdout
    assert float(res.stdout.split("CLOSED ")[1].split()[0]) < 10
