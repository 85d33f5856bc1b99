"""Process pools never serve another pool's data, and workers keep the snapshot taken at sharing time.

Each case runs in a child interpreter with a time limit (a wrong fork could hang).
"""
from __future__ import annotations

import textwrap

import pytest
from conftest import run_child

_TWO_POOLS = """
    import os, signal, time, numpy as np
    from batchup.parallel import WorkerProcessPool
    from batchup.sources import ArrayDataSource

    def firsts(par):
        return sorted({float(b[0][0]) for b in par.batch_iterator(100_000)})

    def kill_all(pool):
        old = pool.worker_pids()
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while set(pool.worker_pids()) & set(old) and time.monotonic() < deadline:
            time.sleep(0.02)

    A = ArrayDataSource([np.zeros(300_000)])  # 2.4 MB: inherited under fork, not pickled
    B = ArrayDataSource([np.ones(300_000)])
    pa, pb = WorkerProcessPool(1), WorkerProcessPool(1)
    sa, sb = pa.parallel_data_source(A, 2), pb.parallel_data_source(B, 2)
    print("BEFORE", firsts(sa), firsts(sb))
    kill_all(pa)
    kill_all(pb)
    print("REPLACED", firsts(sa), firsts(sb))
    # A second source on the same pool, then replacements again.
    C = ArrayDataSource([np.full(300_000, 2.0)])
    sc = pa.parallel_data_source(C, 2)
    kill_all(pa)
    print("SECOND", firsts(sa), firsts(sc))
    pa.close()
    pb.close()
"""


def test_replaced_workers_never_serve_another_pools_source():
    """Two fork pools (a train and a validation prefetcher), workers replaced: each serves its own source."""
    res = run_child(_TWO_POOLS)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "BEFORE [0.0] [1.0]" in out
    assert "REPLACED [0.0] [1.0]" in out, out
    assert "SECOND [0.0] [2.0]" in out, out


_SNAPSHOT = """
    import os, signal, time, numpy as np
    from batchup.parallel import WorkerProcessPool
    from batchup.sources import ArrayDataSource

    def values(par):
        return sorted({{float(v) for b in par.batch_iterator(1000) for v in b[0]}})

    def kill_one(pool):
        victim = pool.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while victim in pool.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.02)

    if __name__ == "__main__":
        X = np.zeros(300_000)
        with WorkerProcessPool(2, start_method={method!r}) as pool:
            par = pool.parallel_data_source(ArrayDataSource([X]), 4)
            print("EPOCH1", values(par))
            X[:] = 7.0  # the parent changes the source after sharing it
            print("EPOCH2", values(par))
            kill_one(pool)
            print("AFTER_REPLACEMENT", values(par))
            Y = np.full(300_000, 3.0)
            other = pool.parallel_data_source(ArrayDataSource([Y]), 4)  # a new generation under fork
            kill_one(pool)
            print("AFTER_SECOND_SOURCE", values(par), values(other))
            print("FRESH_SHARE", values(pool.parallel_data_source(ArrayDataSource([X]), 4)))
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_snapshot_holds_through_replacements_and_new_sources(method, tmp_path):
    """Workers see the source as it was when shared: never the parent's later changes, not even in a
    replacement worker or after another source joined the pool; every epoch is all-old values."""
    script = tmp_path / "snapshot.py"
    script.write_text(textwrap.dedent(_SNAPSHOT.format(method=method)))
    res = run_child(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for tag in ("EPOCH1", "EPOCH2", "AFTER_REPLACEMENT"):
        assert f"{tag} [0.0]\n" in out, out
    assert "AFTER_SECOND_SOURCE [0.0] [3.0]" in out, out
    assert "FRESH_SHARE [7.0]" in out, out


_MEMMAP = """
    import numpy as np
    from batchup.parallel import WorkerProcessPool
    from batchup.sources import ArrayDataSource

    def first_two(par):
        b = next(iter(par.batch_iterator(4)))
        return [float(b[0][0]), float(b[0][1])]

    if __name__ == "__main__":
        path = {path!r}
        np.zeros(300_000).tofile(path)  # 2.4 MB: large enough to travel as a file under spawn
        mode = {mode!r}
        X = np.memmap(path, dtype=np.float64, mode=mode, shape=(300_000,))
        if mode != "r":
            X[0] = 5.0  # edited before sharing
        serial = ArrayDataSource([X])
        with WorkerProcessPool(1, start_method={method!r}) as pool:
            par = pool.parallel_data_source(ArrayDataSource([X]), 2)
            print("SHARED", first_two(par), first_two(serial))
            if mode != "r":
                X[1] = 9.0  # edited after sharing
            print("LATER", first_two(par), first_two(serial))
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("mode", ["r", "r+", "c", "w+"])
def test_memmap_modes_follow_the_documented_semantics(method, mode, tmp_path):
    """Edits before sharing are seen by every start method; after sharing, a mode='c' memmap's private
    edits are not (the snapshot), while r+/w+ edits reach the file and so every reader."""
    script = tmp_path / "memmap.py"
    script.write_text(textwrap.dedent(_MEMMAP.format(path=str(tmp_path / "data.bin"), mode=mode, method=method)))
    res = run_child(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    if mode == "r":
        assert "SHARED [0.0, 0.0] [0.0, 0.0]" in out and "LATER [0.0, 0.0] [0.0, 0.0]" in out, out
    elif mode == "c":
        assert "SHARED [5.0, 0.0] [5.0, 0.0]" in out, out
        assert "LATER [5.0, 0.0] [5.0, 9.0]" in out, out
    else:
        assert "SHARED [5.0, 0.0] [5.0, 0.0]" in out, out
        assert "LATER [5.0, 9.0] [5.0, 9.0]" in out, out


def test_worker_refuses_a_key_of_another_pool():
    """The worker-side check: another pool's key or a missing entry is an error, never a fallback."""
    from batchup.parallel import _worker

    _worker.INHERITED[("1-1", 0)] = "pool 1's source"
    try:
        assert _worker.inherited(("1-1", 0), "1-1") == "pool 1's source"
        with pytest.raises(RuntimeError, match="belongs to another pool"):
            _worker.inherited(("1-1", 0), "1-2")
        with pytest.raises(RuntimeError, match="not in this worker's inherited table"):
            _worker.inherited(("1-1", 5), "1-1")
    finally:
        del _worker.INHERITED[("1-1", 0)]
