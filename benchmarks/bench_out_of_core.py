"""Out-of-core arrays: a shuffled epoch over a >= 2 GB np.memmap, sorted vs unsorted reads.

Workload: a float32 memmap of 2 GiB (524,288 rows x 1,024 values = 4 KiB a
row), written to a temporary directory by this script and deleted at the
end. One shuffled epoch in batches of 256 and of 4,096 rows, with the page
cache dropped for the file before every timed run (``posix_fadvise
DONTNEED`` after ``fsync``, no root needed) so rows come from the disk, and
once more with the file already in the page cache. Contenders:

- ``unsorted np.take``: ``np.take(mm, idx, axis=0)`` with the batch's
  indices in sampled order -- what ``ArrayDataSource`` did before sorted
  reads (the reference);
- ``batchup sorted reads``: ``ArrayDataSource([mm]).batch_iterator(...,
  shuffle=seed)``, which reads the batch's rows in increasing order and
  restores the sampled order;
- ``in-order epoch``: the same source without shuffling (sequential reads),
  the lower bound.

Run: ``python benchmarks/bench_out_of_core.py [--quick]`` (``--quick``: a
256 MiB file, one repetition).
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import add_common_args, contender, format_table, repeats_from, workload, write_results  # noqa: E402

from batchup.samplers import StandardSampler  # noqa: E402
from batchup.sources import ArrayDataSource  # noqa: E402

ROW = 1024  # float32 values per row: 4 KiB, one page


def write_file(path: Path, rows: int) -> None:
    """Write ``rows`` rows of float32 (row i holds i) in 64 MiB chunks, then fsync."""
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(rows, ROW))
    step = (64 << 20) // (ROW * 4)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        mm[start:stop] = np.arange(start, stop, dtype=np.float32)[:, None]
    mm.flush()
    del mm
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def drop_cache(path: Path) -> bool:
    """Evict the file's pages from the page cache; return False where unsupported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def epoch_unsorted(mm: np.ndarray, bs: int, seed: int) -> float:
    total = 0.0
    for idx in StandardSampler(len(mm)).shuffled_indices_batch_iterator(bs, seed_key(seed)):
        total += float(np.take(mm, idx, axis=0)[:, 0].sum(dtype=np.float64))
    return total


def epoch_batchup(mm: np.ndarray, bs: int, seed: int | None) -> float:
    total = 0.0
    for (x,) in ArrayDataSource([mm]).batch_iterator(bs, shuffle=seed):
        total += float(x[:, 0].sum(dtype=np.float64))
    return total


def time_with_prep(prep, run, repeats: int, path: Path, rows: int) -> tuple:  # noqa: ANN001
    """Median time of ``run(memmap)`` over ``repeats`` runs, each after an untimed ``prep()``.

    The timed region includes mapping the file (as a training job would).
    """
    times, result = [], None
    for _ in range(repeats):
        prep()
        gc.collect()
        t0 = time.perf_counter()
        mm = open_memmap(path, rows)
        result = run(mm)
        times.append(time.perf_counter() - t0)
        close_memmap(mm)
    return float(statistics.median(times)), result


def seed_key(seed: int):  # noqa: ANN201 - the sampler's own seed type
    from batchup import _rng

    return _rng.resolve_shuffle(seed)


def open_memmap(path: Path, rows: int) -> np.memmap:
    return np.memmap(path, dtype=np.float32, mode="r", shape=(rows, ROW))


def close_memmap(mm: np.memmap) -> None:
    # Pages still mapped into the process survive DONTNEED, so every timed run
    # maps the file afresh and unmaps it afterwards.
    mm._mmap.close()


def measure(path: Path, rows: int, repeats: int) -> list:
    """Time the contenders for every cache state and batch size; return the workloads."""
    size_gib = path.stat().st_size / 2**30
    expected = float(rows) * (rows - 1) / 2
    caches = ["cold", "warm"] if drop_cache(path) else ["warm"]
    workloads = []
    for cache in caches:
        for bs in (256, 4096):
            def prep(cache: str = cache) -> None:
                if cache == "cold":
                    drop_cache(path)
                else:
                    mm = open_memmap(path, rows)
                    epoch_batchup(mm, 1 << 16, None)  # the whole file into the page cache
                    close_memmap(mm)

            runs = {
                "unsorted np.take": lambda mm, bs=bs: epoch_unsorted(mm, bs, 1),
                "batchup sorted reads": lambda mm, bs=bs: epoch_batchup(mm, bs, 1),
                "in-order epoch": lambda mm, bs=bs: epoch_batchup(mm, bs, None),
            }
            contenders = []
            for name, run in runs.items():
                secs, total = time_with_prep(prep, run, repeats, path, rows)
                if total != expected:
                    raise SystemExit(f"{name}: wrong checksum {total} != {expected}")
                contenders.append(contender(name, secs, f"{rows:,} rows of 4 KiB, batch {bs}"))
            workloads.append(workload(
                f"shuffled epoch over a {size_gib:.2f} GiB memmap, batch {bs}, {cache} page cache",
                "unsorted np.take", contenders,
            ))
            print(format_table({"benchmark": "out_of_core", "machine": "", "workloads": workloads[-1:]}), flush=True)
    return workloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_repeats=2, quick_repeats=1)
    args = parser.parse_args()
    repeats = repeats_from(args)
    rows = (256 << 20) // (ROW * 4) if args.quick else (2 << 30) // (ROW * 4)
    tmp = Path(tempfile.mkdtemp(prefix="batchup-bench-ooc-"))
    try:
        path = tmp / "data.f32"
        write_file(path, rows)
        workloads = measure(path, rows, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = write_results("out_of_core", workloads, args.out, quick=bool(args.quick), repeats=repeats)
    print()
    print(format_table({"benchmark": "out_of_core", "machine": "(see JSON)", "workloads": workloads}))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
