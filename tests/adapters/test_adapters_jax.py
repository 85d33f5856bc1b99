"""JAX adapter: device prefetch (depth, resume, errors), jitted training, sharded and multi-process runs."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from batchup.demo import load_digits
from batchup.sources import ArrayDataSource

jax = pytest.importorskip("jax")
from batchup.adapters.jax import local_batch_size, prefetch_to_device, process_shard  # noqa: E402


class _Counting:
    """An iterator over batches that counts how many were pulled."""

    def __init__(self, batches, fail_at=None):
        self._it = iter(batches)
        self.pulled = 0
        self._fail_at = fail_at

    def __iter__(self):
        return self

    def __next__(self):
        if self.pulled == self._fail_at:
            raise RuntimeError(f"broken batch {self.pulled}")
        batch = next(self._it)
        self.pulled += 1
        return batch


def test_batches_arrive_on_the_device_unchanged():
    src = ArrayDataSource([np.arange(10.0), np.arange(10)])
    got = list(prefetch_to_device(src.batch_iterator(4, shuffle=1)))
    ref = list(src.batch_iterator(4, shuffle=1))
    assert len(got) == 3
    for (x, y), (rx, ry) in zip(got, ref):
        assert isinstance(x, jax.Array) and isinstance(y, jax.Array)
        np.testing.assert_array_equal(np.asarray(x), rx)
        np.testing.assert_array_equal(np.asarray(y), ry)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_prefetch_keeps_size_batches_ahead(size):
    inner = _Counting([(np.full(2, i),) for i in range(10)])
    it = prefetch_to_device(inner, size=size)
    for k in range(1, 11):
        next(it)
        assert inner.pulled == min(10, k + size)


def test_state_is_the_consumers_position_not_the_prefetchers():
    src = ArrayDataSource([np.arange(30)])
    it = prefetch_to_device(src.batch_iterator(4, shuffle=3), size=3)
    assert len(it) == 8
    next(it), next(it)
    state = it.state_dict()
    rest = [np.asarray(b[0]).tolist() for b in it]
    again = prefetch_to_device(src.batch_iterator(4, shuffle=3), size=3)
    again.load_state_dict(state)
    assert [np.asarray(b[0]).tolist() for b in again] == rest and len(rest) == 6


def test_a_failing_batch_is_raised_where_it_happened():
    inner = _Counting([(np.full(2, i),) for i in range(10)], fail_at=3)
    it = prefetch_to_device(inner, size=2)
    got = [int(np.asarray(next(it)[0])[0]) for _ in range(3)]
    assert got == [0, 1, 2]
    with pytest.raises(RuntimeError, match="broken batch 3"):
        next(it)


def test_non_array_leaves_are_kept_and_errors_name_arguments():
    (batch,) = list(prefetch_to_device([{"x": np.ones(2), "name": "a"}]))
    assert batch["name"] == "a" and isinstance(batch["x"], jax.Array)
    with pytest.raises(ValueError, match="size must be a positive int"):
        prefetch_to_device([], size=0)
    with pytest.raises(TypeError, match="cannot checkpoint"):
        prefetch_to_device(iter([])).state_dict()


def test_process_shard_and_local_batch_size():
    assert process_shard() is None  # a single process here
    assert process_shard(1, 2) == (1, 2)
    with pytest.raises(ValueError, match=r"process_index must be an int in \[0, 2\), got 2"):
        process_shard(2, 2)
    assert local_batch_size(64) == 64
    with pytest.raises(ValueError, match="does not divide by the 3 processes"):
        local_batch_size(64, process_count=3, local_device_count=1)
    with pytest.raises(ValueError, match="does not divide by the 4 local devices"):
        local_batch_size(36, process_count=2, local_device_count=4)


def test_jitted_training_step_learns_the_digits():
    X, y = load_digits()
    X = X.reshape(len(X), -1)
    src = ArrayDataSource([X, y.astype(np.int32)])
    jnp = jax.numpy

    def loss_fn(params, x, t):
        logits = x @ params["w"] + params["b"]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(t)), t])

    @jax.jit
    def step(params, x, t):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, t)
        return jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, params, grads), loss

    params = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
    losses = []
    for epoch in range(3):
        for x, t in prefetch_to_device(src.batch_iterator(128, shuffle=epoch, drop_last=True)):
            params, loss = step(params, x, t)
            losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


_SHARDED = textwrap.dedent(
    """
    import numpy as np, jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from batchup.adapters.jax import prefetch_to_device
    from batchup.demo import load_digits
    from batchup.sources import ArrayDataSource

    X, y = load_digits()
    src = ArrayDataSource([X.reshape(len(X), -1), y.astype(np.int32)])
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    sharding = NamedSharding(mesh, P("batch"))

    def loss_fn(w, x, t):
        return -jnp.mean(jax.nn.log_softmax(x @ w)[jnp.arange(t.shape[0]), t])

    @jax.jit
    def step(w, x, t):
        loss, g = jax.value_and_grad(loss_fn)(w, x, t)
        return w - 0.5 * g, loss

    w = jax.device_put(jnp.zeros((64, 10)), NamedSharding(mesh, P()))
    losses, spread = [], set()
    for epoch in range(3):
        batches = src.batch_iterator(128, shuffle=epoch, drop_last=True)
        for x, t in prefetch_to_device(batches, sharding=sharding):
            spread.add(len(x.sharding.device_set))
            w, loss = step(w, x, t)
            losses.append(float(loss))
    print(len(jax.devices()), sorted(spread), losses[0] > 2 * losses[-1])
    """
)


def test_batches_sharded_over_two_cpu_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _SHARDED], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["2", "[2]", "True"]


_MULTI_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np, jax, jax.numpy as jnp
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    rank, port = int(sys.argv[1]), int(sys.argv[2])
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=rank)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from batchup.adapters.jax import local_batch_size, prefetch_to_device, process_shard
    from batchup.sources import ArrayDataSource

    mesh = Mesh(np.array(jax.devices()), ("batch",))
    sharding = NamedSharding(mesh, P("batch"))
    src = ArrayDataSource([np.arange(70)])
    # 70 samples over 2 processes: 35 each (one padded duplicate would be 0 here), 4 batches of 8.
    it = src.batch_iterator(local_batch_size(16), shuffle=5, shard=process_shard(), drop_last=True)
    total = jax.jit(lambda x: jnp.sum(x))
    sums, ids = [], []
    for (x,) in prefetch_to_device(it, sharding=sharding):
        sums.append(int(total(x)))
        ids.extend(np.concatenate([np.asarray(s.data) for s in x.addressable_shards]).tolist())
        shape = x.shape
    print("RESULT " + json.dumps({"sums": sums, "ids": ids, "shape": list(shape), "n": len(jax.devices())}))
    jax.distributed.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_jax_processes_build_global_batches():
    """make_array_from_process_local_data path: equal batch counts per process, so no collective hangs."""
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen([sys.executable, "-c", _MULTI_PROCESS, str(r), str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for r in range(2)
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=150))
    finally:
        for p in procs:  # JAX ignores SIGTERM while blocked in a collective: SIGKILL
            if p.poll() is None:
                p.kill()
                p.communicate()
    results = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:]))
    a, b = results
    assert a["n"] == 4 and a["shape"] == [16]
    assert a["sums"] == b["sums"] and len(a["sums"]) == 4  # one global array per step, seen alike
    assert not set(a["ids"]) & set(b["ids"]) and len(a["ids"]) == len(b["ids"]) == 32
    assert sum(a["sums"]) == sum(a["ids"]) + sum(b["ids"])


def test_prefetch_over_a_batchup_pool():
    from batchup import work_pool

    src = ArrayDataSource([np.arange(30.0)])
    serial = [b[0].tolist() for b in src.batch_iterator(4, shuffle=1)]
    with work_pool.WorkerThreadPool(processes=2) as pool:
        parallel = pool.parallel_data_source(src, batch_buffer_size=4)
        got = [np.asarray(b[0]).tolist() for b in prefetch_to_device(parallel.batch_iterator(4, shuffle=1))]
    assert got == serial


_INDIVISIBLE = textwrap.dedent(
    """
    import numpy as np, jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from batchup.adapters.jax import prefetch_to_device
    from batchup.sources import ArrayDataSource

    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), P("batch"))
    for n, bs, drop in ((10, 3, False), (10, 4, False), (9, 4, False), (9, 4, True)):
        src = ArrayDataSource([np.arange(float(n))])
        try:
            got = len(list(prefetch_to_device(src.batch_iterator(bs, drop_last=drop), sharding=sharding)))
            print(n, bs, drop, "ok", got)
        except ValueError as err:
            print(n, bs, drop, "error", "batch_size=%d" % bs in str(err), "2 devices" in str(err))
    """
)


def test_indivisible_batches_are_refused_before_the_first_batch():
    """JAX's own error would come at the end of the epoch; batchup names batch size and device count up front."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _INDIVISIBLE], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == [
        "10 3 False error True True",  # every batch of 3 is indivisible
        "10 4 False ok 3",  # 4, 4, 2: all divide
        "9 4 False error True True",  # the last batch of 1 does not
        "9 4 True ok 2",  # ... unless it is dropped
    ]
