"""Parallel batch preparation: batchup's pools against the serial loop, torch and BatchUp 0.2.3.

One command: ``python benchmarks/bench_parallel.py`` (``--quick`` for a small run).

Workloads
---------
* ``augmented epoch``: 100,000 x 3x32x32 uint8 images with int labels, batch
  128, shuffled; a per-batch augmentation that reflect-pads, randomly crops
  and flips *each sample in a Python loop* and scales to float32 (it holds
  the GIL). Contenders: the serial loop, batchup threads (2), batchup
  processes (2), torch ``DataLoader(num_workers=2, batch_size=None)`` over a
  batch-returning dataset that returns tensors, and BatchUp 0.2.3's thread and
  process pools run in ``benchmarks/.venv-batchup023`` (skipped with a note
  if that environment is missing), and joblib's ``loky`` backend
  (``Parallel(n_jobs=2, backend="loky", return_as="generator")`` over the
  batches, the images passed as a ``np.load(mmap_mode="r")`` memmap so joblib
  sends a file name, not the array).
* ``time to first batch``: from creating the pool and the iterator to the
  first batch, 2 process workers, for each start method, each in a fresh
  interpreter: the first pool there (``cold``: a fork server starts too) and
  a second one (``warm``).
* ``memory``: total proportional set size (PSS) of the parent and every
  process it started (2 process workers, and under ``fork`` the template they
  are forked from) iterating over a 1 GB in-memory array (unit GB).
* ``overlap``: a consumer that spends C ms per batch in NumPy (GIL released)
  and a loader that spends L ms; a prefetching thread pool should take about
  ``n x max(C, L)``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BENCH_DIR,
    add_common_args,
    contender,
    emit_json,
    format_table,
    median_of,
    repeats_from,
    run_json_subprocess,
    workload,
    write_results,
)

BS = 128
SEED = 0
VENV023 = BENCH_DIR / ".venv-batchup023"


def augment_sample_loop(X, y, rng):
    """Reflect-pad by 4, random 32x32 crop, random flip, per sample in Python; scale to float32."""
    out = np.empty(X.shape, dtype=np.float32)
    offsets = rng.integers(0, 9, size=(len(X), 2))
    flips = rng.random(len(X)) < 0.5
    for k in range(len(X)):
        padded = np.pad(X[k], ((0, 0), (4, 4), (4, 4)), mode="reflect")
        i, j = offsets[k]
        crop = padded[:, i : i + 32, j : j + 32]
        if flips[k]:
            crop = crop[:, :, ::-1]
        out[k] = crop * np.float32(1.0 / 255.0)
    return out, y


def make_data(n):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.int64)


def consume(it):
    total = 0
    for xb, yb in it:
        total += len(yb)
        xb[-1, 0, 0, 0]
    return total


# -- contenders of the augmented epoch -----------------------------------------------------


def run_batchup(X, y, workers, kind):
    from batchup.sources import ArrayDataSource

    ds = ArrayDataSource([X, y]).map(augment_sample_loop, seed=SEED)
    if workers == 0:
        return consume(ds.batch_iterator(BS, shuffle=SEED))
    with ds.prefetch(workers, kind=kind, buffer_size=8) as par:
        return consume(par.batch_iterator(BS, shuffle=SEED))


def run_batchup_compat(X, y):
    """BatchUp 0.2's spelling: a WorkerProcessPool(2) and parallel_data_source(ds, 8)."""
    from batchup import data_source, work_pool

    ds = data_source.ArrayDataSource([X, y]).map(augment_sample_loop, seed=SEED)
    with work_pool.WorkerProcessPool(processes=2) as pool:
        return consume(pool.parallel_data_source(ds, 8).batch_iterator(BS, shuffle=SEED))


class _TorchBatches:
    """A map-style torch dataset whose item ``b`` is the whole augmented batch ``b`` as tensors."""

    def __init__(self, X, y):
        self.X, self.y = X, y
        self.order = np.random.default_rng(SEED).permutation(len(X))

    def __len__(self):
        return (len(self.X) + BS - 1) // BS

    def __getitem__(self, b):
        import torch

        idx = np.sort(self.order[b * BS : (b + 1) * BS])
        xb, yb = augment_sample_loop(self.X[idx], self.y[idx], np.random.default_rng([SEED, b]))
        return torch.from_numpy(xb), torch.from_numpy(yb)


def run_torch(X, y):
    from torch.utils.data import DataLoader

    loader = DataLoader(_TorchBatches(X, y), batch_size=None, shuffle=False, num_workers=2)
    return consume((xb.numpy(), yb.numpy()) for xb, yb in loader)


def _loky_batch(X, y, idx, b):
    return augment_sample_loop(X[idx], y[idx], np.random.default_rng([SEED, b]))


def run_loky(X_path, y):
    """joblib's loky backend over the same batches (ordered results, 2 workers, bounded dispatch)."""
    from joblib import Parallel, delayed

    X = np.load(X_path, mmap_mode="r")
    order = np.random.default_rng(SEED).permutation(len(y))
    n_batches = (len(y) + BS - 1) // BS
    tasks = (delayed(_loky_batch)(X, y, np.sort(order[b * BS : (b + 1) * BS]), b) for b in range(n_batches))
    return consume(Parallel(n_jobs=2, backend="loky", return_as="generator", pre_dispatch="2*n_jobs")(tasks))


def run_batchup023(data_dir, n_repeats, quick):
    py = VENV023 / "bin" / "python"
    if not py.exists():
        return {kind: {"error": f"no BatchUp 0.2.3 environment at {VENV023.name}"} for kind in ("thread", "process")}
    out = {}
    for kind in ("thread", "process"):
        out[kind] = run_json_subprocess(
            [str(py), str(Path(__file__).resolve()), "--worker023", kind, "--data", str(data_dir),
             "--repeats", str(n_repeats)],
            timeout=1800,
        )
    return out


def worker023(kind, data_dir, n_repeats):
    """Inside the BatchUp 0.2.3 environment: time one epoch with its pool (global RNG augmentation)."""
    import importlib.metadata

    from batchup import data_source, work_pool

    X = np.load(Path(data_dir) / "X.npy")
    y = np.load(Path(data_dir) / "y.npy")

    def one_epoch():
        pool = work_pool.WorkerThreadPool(processes=2) if kind == "thread" else work_pool.WorkerProcessPool(processes=2)
        ds = data_source.ArrayDataSource([X, y]).map(_augment_global_rng)
        par = pool.parallel_data_source(ds, batch_buffer_size=8)
        return consume(par.batch_iterator(BS, shuffle=np.random.RandomState(SEED)))

    best, times, total = median_of(one_epoch, n_repeats, warmup=0)
    emit_json({"seconds": best, "times": times, "samples": total,
               "batchup_version": importlib.metadata.version("batchup")})


def _augment_global_rng(X, y):
    return augment_sample_loop(X, y, np.random.default_rng(np.random.randint(1 << 31)))


# -- the other workloads -----------------------------------------------------------------------


def time_to_first_batch(X, y, method=None):
    """Seconds from creating a 2-worker process pool to the first augmented batch."""
    from batchup.parallel import WorkerProcessPool
    from batchup.sources import ArrayDataSource

    t0 = time.perf_counter()
    with WorkerProcessPool(2, start_method=method) as pool:
        it = pool.parallel_data_source(ArrayDataSource([X, y]).map(augment_sample_loop, seed=SEED), 8)
        next(it.batch_iterator(BS, shuffle=SEED))
        elapsed = time.perf_counter() - t0
    return elapsed


def first_batch_worker(method, n, repeats):
    """In a fresh interpreter: the first pool's time to first batch (cold), then the median of the next ones."""
    X, y = make_data(n)
    cold = time_to_first_batch(X, y, method)
    warm = statistics.median(time_to_first_batch(X, y, method) for _ in range(repeats))
    emit_json({"cold": cold, "warm": warm})


def first_batch_by_method(n, repeats):
    """Time to first batch per start method: ``repeats`` fresh interpreters each, medians of cold and warm."""
    rows = []
    for method in ("fork", "forkserver", "spawn"):
        runs = [run_json_subprocess(
            [sys.executable, str(Path(__file__).resolve()), "--first-batch-worker", method, "--data-n", str(n),
             "--repeats", str(repeats)], 600,
        ) for _ in range(repeats)]
        failed = [r for r in runs if "error" in r]
        res = failed[0] if failed else {which: statistics.median(r[which] for r in runs) for which in ("cold", "warm")}
        for which in ("cold", "warm"):
            label = f"batchup processes (2), {method}, {which}"
            if "error" in res:
                rows.append(contender(label, None, res["error"]))
            else:
                rows.append(contender(label, res[which], f"{n} images; pool + iterator + first augmented batch"))
    return rows


def memory_total(n_bytes):
    import psutil

    from batchup.parallel import WorkerProcessPool
    from batchup.sources import ArrayDataSource

    X = np.ones((n_bytes // (3 * 32 * 32), 3, 32, 32), dtype=np.uint8)
    me = psutil.Process()
    alone = me.memory_full_info().pss
    with WorkerProcessPool(2) as pool:
        it = pool.parallel_data_source(ArrayDataSource([X]), 8).batch_iterator(BS, shuffle=SEED)
        for _, _b in zip(range(300), it):
            pass
        # Every process of the pool, not just the workers: under fork the workers come from a
        # template process that shares the parent's pages too, and PSS splits pages among them all.
        procs = [me] + me.children(recursive=True)
        assert set(pool.worker_pids()) <= {p.pid for p in procs}
        pss = sum(p.memory_full_info().pss for p in procs)
        it.close()
    return alone / 2**30, pss / 2**30


def overlap(n, c_ms, l_ms):
    from batchup.sources import ArrayDataSource

    a = np.random.default_rng(0).random((400, 400))

    def median_time(f, k=7):
        times = []
        for _ in range(k):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return sorted(times)[k // 2]

    reps = max(1, int(round(c_ms / 1000 / max(median_time(lambda: a @ a), 1e-6))))

    def consumer_work():
        for _ in range(reps):
            a @ a

    c_real = median_time(consumer_work)

    def loader(X):
        time.sleep(l_ms / 1000)
        return (X,)

    ds = ArrayDataSource([np.arange(n * 4)]).map(loader)
    t0 = time.perf_counter()
    for _ in ds.batch_iterator(4):
        consumer_work()
    serial = time.perf_counter() - t0
    with ds.prefetch(2, kind="thread", buffer_size=4) as par:
        t0 = time.perf_counter()
        for _ in par.batch_iterator(4):
            consumer_work()
        threaded = time.perf_counter() - t0
    ideal = n * max(c_real, l_ms / 1000)
    return ideal, serial, threaded


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser, default_repeats=3, quick_repeats=1)
    parser.add_argument("--worker023", choices=["thread", "process"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--first-batch-worker", choices=["fork", "forkserver", "spawn"], help=argparse.SUPPRESS)
    parser.add_argument("--data-n", type=int, default=20_000, help=argparse.SUPPRESS)
    parser.add_argument(
        "--only-first-batch", action="store_true",
        help="measure only the time to first batch of each start method (a quick run)",
    )
    args = parser.parse_args()
    repeats = repeats_from(args)
    if args.worker023:
        worker023(args.worker023, args.data, repeats)
        return
    if args.memory_worker:
        alone, total = memory_total(int(args.memory_worker * 2**30))
        emit_json({"alone": alone, "total": total})
        return
    if args.first_batch_worker:
        first_batch_worker(args.first_batch_worker, args.data_n, repeats)
        return
    if args.only_first_batch:
        for row in first_batch_by_method(args.data_n, max(repeats, 3)):
            print(f"  {row['name']}: {row['seconds'] if row['seconds'] is None else round(row['seconds'], 3)} s")
        return

    n = 10_000 if args.quick else 100_000
    X, y = make_data(n)
    note_n = f"{n} images, batch {BS}"
    timed = {}
    for name, fn in [
        ("serial", lambda: run_batchup(X, y, 0, "thread")),
        ("batchup threads (2)", lambda: run_batchup(X, y, 2, "thread")),
        ("batchup processes (2)", lambda: run_batchup(X, y, 2, "process")),
        ("batchup WorkerProcessPool(2), 0.2 API", lambda: run_batchup_compat(X, y)),
    ]:
        timed[name] = median_of(fn, repeats, warmup=0)[0]
        print(f"  {name}: {timed[name]:.2f} s", flush=True)
    cons = [contender(k, v, note_n) for k, v in timed.items()]
    try:
        import torch  # noqa: F401

        secs = median_of(lambda: run_torch(X, y), repeats, warmup=0)[0]
        cons.append(contender("torch DataLoader (2 workers)", secs, "batch_size=None, batch-returning dataset, tensors"))
    except ImportError:
        cons.append(contender("torch DataLoader (2 workers)", None, "torch is not installed"))
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "X.npy", X)
        np.save(Path(tmp) / "y.npy", y)
        try:
            import joblib  # noqa: F401

            secs = median_of(lambda: run_loky(Path(tmp) / "X.npy", y), repeats, warmup=0)[0]
            cons.append(contender("joblib loky (2 workers)", secs, "Parallel(return_as='generator'), memmapped images"))
        except ImportError:
            cons.append(contender("joblib loky (2 workers)", None, "joblib is not installed"))
        old = run_batchup023(tmp, repeats, args.quick)
    for kind, label in (("thread", "BatchUp 0.2.3 threads (2)"), ("process", "BatchUp 0.2.3 processes (2)")):
        res = old[kind]
        if "error" in res:
            cons.append(contender(label, None, res["error"]))
        else:
            cons.append(contender(label, res["seconds"], f"batchup {res.get('batchup_version')}, own venv"))
    workloads = [workload("augmented epoch", "serial", cons)]

    ttfb = statistics.median(time_to_first_batch(X[:20_000], y[:20_000]) for _ in range(max(repeats, 3)))
    workloads.append(workload("time to first batch", "batchup processes (2)", [
        contender("batchup processes (2)", ttfb, "default start method; pool + iterator + first augmented batch"),
        *first_batch_by_method(20_000, max(repeats, 3)),
    ]))

    gb = 0.25 if args.quick else 1.0
    # In a fresh interpreter, so that torch (imported above) does not inflate the figures.
    mem = run_json_subprocess([sys.executable, str(Path(__file__).resolve()), "--memory-worker", str(gb)], 600)
    if "error" in mem:
        workloads.append(workload("memory", "parent alone", [
            contender("parent alone", None, mem["error"]),
            contender("parent + 2 process workers", None, mem["error"]),
        ], unit="GB"))
    else:
        workloads.append(workload("memory", "parent alone", [
            contender("parent alone", mem["alone"], f"PSS of a fresh interpreter holding a {gb:g} GB uint8 array"),
            contender("parent + 2 process workers", mem["total"],
                      "PSS summed over the parent and every process it started (workers, fork template) "
                      "while iterating; target <= 1.1 GB"),
        ], unit="GB"))

    nb = 20 if args.quick else 50
    ideal, serial, threaded = overlap(nb, 20, 20)
    workloads.append(workload("overlap", "n x max(C, L)", [
        contender("n x max(C, L)", ideal, f"{nb} batches, C = L = 20 ms"),
        contender("serial loop", serial, "n x (C + L)"),
        contender("batchup threads (2), prefetch 4", threaded, "target <= 1.1 x n x max(C, L)"),
    ]))

    path = write_results("parallel", workloads, args.out, quick=bool(args.quick), repeats=repeats)
    import json

    print(format_table(json.loads(path.read_text())))
    print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
