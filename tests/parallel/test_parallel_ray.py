"""JoblibWorkerPool on Ray: the batches of the serial iterator, made by Ray tasks on a Ray cluster.

The module starts a one-node Ray cluster with ``ray start --head`` on 127.0.0.1 (no dashboard,
no usage stats, a token of its own so nothing is written to the home folder), connects to it
with ``ray.init(address=...)``, and at the end disconnects and stops every process of that
cluster by its pid, checking with psutil that none is left. Ray binds its services to the
address it considers the node's; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes that the loopback
address (and allows one node only). Faults that could hang run in child interpreters with a
time limit.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import joblib
import numpy as np
import parallel_tasks as T
import pytest
from conftest import leftovers, run_child, snapshot
from helpers import assert_batches_equal, assert_resumes, stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import batchup
from batchup.parallel import JoblibWorkerPool, PoolClosedError, WorkerError
from batchup.parallel.errors import BatchTimeoutError
from batchup.sources import ArrayDataSource, CompositeDataSource

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(batchup.__file__)))
# Set before Ray is imported (it reads some of them at import time) and for every Ray process.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # bind to 127.0.0.1 (one node only)
    "RAY_AUTH_MODE": "token",
}
START_TIMEOUT = 120  # seconds for `ray start` on a busy machine (about 15 s here)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_of(folder: str) -> list:
    """Return the processes whose command line names ``folder``, and all their descendants."""
    import psutil

    found: dict = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(folder in arg for arg in p.info["cmdline"] or ()):
                found[p.pid] = p
                found.update((c.pid, c) for c in p.children(recursive=True))
        except psutil.Error:
            pass
    return [p for p in found.values() if p.pid != os.getpid()]


def _stop(processes: list) -> list:
    """Terminate, then kill, ``processes``; return those still alive."""
    import psutil

    for p in processes:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=3)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=10)
    return alive


class RayHead:
    """A Ray head node started with ``ray start`` in a temporary folder, and the processes it owns."""

    def __init__(self) -> None:
        # Short: Ray's unix sockets live under it (108 characters at most).
        self.folder = tempfile.mkdtemp(prefix="bu-ray-")
        self.address = f"127.0.0.1:{_free_port()}"
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([_ROOT, _HERE, os.environ.get("PYTHONPATH", "")]))
        self.seen: dict = {}

    def start(self) -> None:
        ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
        if ray_cli is None:
            pytest.skip("the ray command is not installed")
        port = self.address.rsplit(":", 1)[1]
        res = subprocess.run(
            [ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.folder}"],
            capture_output=True, text=True, timeout=START_TIMEOUT, env=self.env, cwd=self.folder,
            start_new_session=True,  # the cluster's daemons in a session of their own, away from pytest's signals
        )
        self.remember()
        if res.returncode != 0:
            raise RuntimeError(f"ray start failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")

    def remember(self) -> None:
        """Note the cluster's processes (workers come and go: call again before stopping)."""
        self.seen.update((p.pid, p) for p in _processes_of(self.folder))

    def stop(self) -> list:
        self.remember()
        alive = _stop(list(self.seen.values()))
        shutil.rmtree(self.folder, ignore_errors=True)
        return alive


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster on 127.0.0.1 (2 CPUs) that this process is connected to."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
        for key, value in RAY_ENV.items():
            mp.setenv(key, value)
        head = RayHead()
        sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it
        ray = None
        try:
            head.start()
            import ray
            from ray.util.joblib import register_ray

            ray.init(address=head.address, log_to_driver=False, configure_logging=False)
            register_ray()
            yield head
        finally:
            if ray is not None:
                ray.shutdown()
            signal.signal(signal.SIGTERM, sigterm)
            alive = head.stop()
    assert not alive, f"Ray processes left running: {alive}"


@pytest.fixture
def leak_guard(request):
    """The suite's guard (conftest.py), without the fd count: Ray's driver opens connections lazily."""
    before = snapshot()
    yield
    deadline = time.monotonic() + 5
    while True:
        left = leftovers(before, check_fds=False)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"leaked after the test: {left}"


def _ray_pool(**config) -> JoblibWorkerPool:
    with joblib.parallel_config(backend="ray", **config):
        return JoblibWorkerPool()


def _ds(repeats=1):
    X = np.arange(53 * 3, dtype=np.int64).reshape(53, 3)
    return ArrayDataSource([X, np.arange(53) * 3 + 1], repeats=repeats)


def _composite():
    labelled = ArrayDataSource([np.arange(5)], repeats=-1)
    return CompositeDataSource([labelled, ArrayDataSource([np.arange(100, 131)])])


SOURCES = {
    "shuffled": (lambda: _ds(2), lambda: np.random.RandomState(4)),
    "seeded map": (lambda: _ds(2).map(T.add_noise, seed=11), lambda: 1),
    "composite": (_composite, lambda: 9),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_same_batches_as_serial(ray_cluster, name):
    """Ray tasks make exactly the serial iterator's batches, in its order, as writable arrays."""
    make, shuffle = SOURCES[name]
    ds = make()
    ref = stream(ds.batch_iterator(7, shuffle=shuffle()))
    pool = _ray_pool()
    with pool:
        assert pool.backend_name == "RayBackend" and pool.num_workers == 2
        got = stream(pool.parallel_data_source(ds, 4).batch_iterator(7, shuffle=shuffle()))
        pids = set(pool.work_stream((os.getpid,) for _ in range(6)).retrieve_iter())
    assert_batches_equal(got, ref)
    assert all(a.flags.writeable for batch in got for a in batch)
    assert os.getpid() not in pids


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bs=st.integers(1, 60), seed=st.integers(0, 2**16), buffer=st.integers(1, 6), repeats=st.sampled_from([1, 2]))
def test_any_batch_size_and_buffer(ray_cluster, bs, seed, buffer, repeats):
    """Property: for any batch size, shuffle seed and buffer, the Ray stream is the serial stream."""
    ds = _ds(repeats).map(T.add_noise, seed=seed)
    with _ray_pool() as pool:
        got = stream(pool.parallel_data_source(ds, buffer).batch_iterator(bs, shuffle=seed))
    assert_batches_equal(got, stream(ds.batch_iterator(bs, shuffle=seed)))


@pytest.mark.slow
def test_worker_error_reaches_caller(ray_cluster):
    """A task's exception is raised in the caller, same type, with the Ray worker's traceback."""
    with _ray_pool() as pool:
        s = pool.work_stream((T.fail_on, (i, 2)) for i in range(5))
        assert s.retrieve() == 0 and s.retrieve() == 1
        with pytest.raises(ValueError, match="bad 2") as info:
            s.retrieve()
        cause = str(info.value.__cause__)
        assert "while preparing task 2" in cause and "fail_on" in cause
        assert s.retrieve() is None  # the stream ended after the error
        with pytest.raises(WorkerError, match="result of task 0 could not be pickled"):
            pool.work_stream([(T.return_lambda, (1,))]).retrieve()


@pytest.mark.slow
def test_close_fails_outstanding_batches(ray_cluster):
    """close() fails every batch still queued or running with PoolClosedError, at once."""
    pool = _ray_pool()
    s = pool.work_stream(((T.sleep_then, (i, 0.5)) for i in range(8)), task_buffer_size=8, timeout=60)
    got = [s.retrieve()]
    pool.close()
    with pytest.raises(PoolClosedError, match=r"the pool was closed before task \d finished"):
        got.extend(s.retrieve_iter())
    assert got == list(range(len(got))) and len(got) < 8  # the tasks done before close(), then the error
    with pytest.raises(PoolClosedError, match="closed"):
        pool.work_stream([(pow, (2, 3))])


@pytest.mark.slow
def test_timeout_raises_and_the_pool_goes_on(ray_cluster):
    """A batch past the stream's timeout is BatchTimeoutError; the forgotten tasks finish and the pool works."""
    with _ray_pool() as pool:
        s = pool.work_stream(((T.sleep_then, (i, 3)) for i in range(3)), task_buffer_size=3, timeout=0.5)
        with pytest.raises(BatchTimeoutError, match="task 0 was not ready within timeout=0.5 s"):
            s.retrieve()
        assert s.retrieve() is None  # the stream ended at the timeout
        again = pool.work_stream(((pow, (2, i)) for i in range(4)), timeout=60)
        assert list(again.retrieve_iter()) == [1, 2, 4, 8]


@pytest.mark.slow
def test_resume_state_loads_into_serial(ray_cluster):
    """The state of a Ray-prefetched iterator is a serial state: the serial iterator resumes from it."""
    ds = _ds(2).map(T.add_noise, seed=3)
    with _ray_pool() as pool:
        it = pool.parallel_data_source(ds, 5).batch_iterator(6, shuffle=2)
        head = stream(it, 4)
        state = json.loads(json.dumps(it.state_dict()))
        tail = stream(it)
        assert_resumes(lambda: pool.parallel_data_source(ds, 3).batch_iterator(9, shuffle=5), every=4)
    serial = ds.batch_iterator(6, shuffle=2)
    serial.load_state_dict(state)
    assert_batches_equal(stream(serial), tail)
    assert_batches_equal(head + tail, stream(ds.batch_iterator(6, shuffle=2)))


@pytest.mark.slow
def test_dead_worker_raises(ray_cluster):
    """A Ray worker killed while making a batch: WorkerCrashedError after the batches before it, no hang."""
    res = run_child(f"""
        import functools, os, signal, numpy as np, joblib, ray
        from ray.util.joblib import register_ray
        from batchup.parallel import JoblibWorkerPool, WorkerCrashedError
        from batchup.sources import ArrayDataSource

        def die_on(X, bad):
            if X[0] == bad:
                os.kill(os.getpid(), signal.SIGKILL)
            return (X,)

        ray.init(address={ray_cluster.address!r}, log_to_driver=False, configure_logging=False)
        register_ray()
        ds = ArrayDataSource([np.arange(40)])
        with joblib.parallel_config(backend="ray"):
            pool = JoblibWorkerPool()
        with pool:
            got = []
            try:
                for (x,) in pool.parallel_data_source(ds.map(functools.partial(die_on, bad=12)), 4).batch_iterator(4):
                    got.append(x.tolist())
            except WorkerCrashedError as e:
                print("CRASH", got, e)
            print("AGAIN", len(list(pool.parallel_data_source(ds, 4).batch_iterator(4))))
        ray.shutdown()
    """, timeout=90)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "CRASH [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]] batch 3 failed on the Ray cluster" in res.stdout
    assert "WorkerCrashedError" in res.stdout and "AGAIN 10" in res.stdout, res.stdout


@pytest.mark.slow
def test_killed_cluster_raises():
    """Every process of a (local) Ray cluster killed mid-stream: WorkerCrashedError, no hang."""
    folder = tempfile.mkdtemp(prefix="bu-ray-")
    env = dict(RAY_ENV, RAY_AUTH_TOKEN=secrets.token_hex(16))
    try:
        res = run_child(f"""
            import os, psutil, joblib, ray, parallel_tasks as T
            from ray.util.joblib import register_ray
            from batchup.parallel import JoblibWorkerPool, WorkerCrashedError

            ray.init(address="local", num_cpus=1, include_dashboard=False, _temp_dir={folder!r}, log_to_driver=False,
                     configure_logging=False)
            register_ray()
            with joblib.parallel_config(backend="ray"):
                pool = JoblibWorkerPool()
            s = pool.work_stream(((T.sleep_then, (i, 1)) for i in range(10)), task_buffer_size=4)
            print("FIRST", s.retrieve(), flush=True)
            cluster = psutil.Process().children(recursive=True)
            for p in cluster:
                p.kill()
            try:
                print("REST", list(s.retrieve_iter()))
            except WorkerCrashedError as e:
                print("CRASH", e, flush=True)
            pool.close()
            _, alive = psutil.wait_procs(cluster, timeout=10)
            print("ALIVE", len(alive), flush=True)
            os._exit(0)  # ray.shutdown() would wait for the dead cluster
        """, timeout=120, env=env)
    finally:
        left = _stop(_processes_of(folder))
        shutil.rmtree(folder, ignore_errors=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "FIRST 0" in res.stdout and "failed on the Ray cluster" in res.stdout, res.stdout + res.stderr[-3000:]
    assert "ALIVE 0" in res.stdout and not left, (res.stdout, left)


@pytest.fixture
def ray_module(monkeypatch):
    """Ray imported with this module's settings (it reads some at import), its joblib backend registered."""
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    import ray
    from ray.util.joblib import register_ray

    register_ray()
    return ray


def test_needs_a_connected_ray(ray_module, monkeypatch):
    """Without ray.init() the pool says how to connect instead of starting a cluster behind your back."""
    ray = ray_module
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(RuntimeError, match=r"needs a connected Ray: call ray.init\(address=\.\.\.\)"):
        _ray_pool()
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    with pytest.raises(TypeError, match="ray_remote_args must be a dict of ray.remote options, got 'x'"):
        _ray_pool(ray_remote_args="x")


def test_selected_for_rays_backend_only(ray_module):
    """Only joblib's Ray backend (or a subclass) selects the Ray engine."""
    from joblib._parallel_backends import ThreadingBackend
    from ray.util.joblib.ray_backend import RayBackend

    from batchup.parallel import _ray

    class MyRay(RayBackend):
        pass

    assert _ray.is_ray_backend(RayBackend()) and _ray.is_ray_backend(MyRay())
    assert not _ray.is_ray_backend(ThreadingBackend())


def test_result_that_cannot_be_unpickled_here(ray_module):
    """A batch made on the cluster that this process cannot unpickle is a WorkerError naming the task."""
    from batchup.parallel import _ray

    data = b"cno_such_module_for_this_test\nf\n."  # a pickled reference to a module not here
    with pytest.raises(WorkerError, match="the result of task 4 was made on the Ray cluster but cannot be unpickled"):
        _ray._unpickle("task 4", data)
