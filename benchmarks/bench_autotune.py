"""Workers chosen by measurement (``num_workers="auto"``) against a hand-picked grid, and the profiler's cost.

One command: ``python benchmarks/bench_autotune.py`` (``--quick`` for a small run).

Workloads
---------
* ``augmented epoch``: the workload of ``bench_parallel.py`` (CIFAR-size
  uint8 images, batch 128, shuffled, a per-sample Python augmentation that
  holds the GIL; 100,000 images, 10,000 with ``--quick``). The grid: the
  serial loop, 2 and 4 threads, 1, 2 and 3 processes (buffer
  ``max(4, 2 x workers)``); then ``ds.prefetch("auto")``, timed over its
  first epoch (pool start and calibration included) and over a later
  epoch (the choice reused). Each setting creates its pool inside the timed
  region, as in ``bench_parallel.py``.
* ``in-memory gather``: the images of ``bench_inmemory.py`` (b) without
  augmentation (50,000, 5,000 with ``--quick``): a batch takes well under
  a millisecond, so the serial loop should win and ``"auto"`` should stay
  in the calling thread (at least 7 repetitions: the loops are short).
* ``waiting loader``: ``bench_parallel.py``'s overlap workload: a loader
  that sleeps 20 ms per batch (GIL released) under a consumer that spends
  about 20 ms per batch in NumPy; the grid adds 8 threads.
* ``profiler overhead``: the same loops plain and through
  ``batchup.profile``: the in-memory gather of ``bench_inmemory.py`` (a) and
  (b) serially, and the augmented epoch with 2 processes.

Contenders of one workload are timed in turn within each repetition (so a
change in the machine's load hits them alike; the order rotates from one
repetition to the next) and the median repetition
is reported, as in every benchmark here. The reference of each autotune workload is the fastest setting of its
grid, named in the table; the target is ``"auto"`` within 1.10 x of it, and
never slower than the serial loop.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, contender, format_table, repeats_from, workload, write_results  # noqa: E402
from bench_parallel import BS, SEED, augment_sample_loop, make_data  # noqa: E402

import batchup  # noqa: E402
from batchup.sources import ArrayDataSource  # noqa: E402

TITLE = "Workers chosen by measurement, and the profiler's cost"
DESCRIPTION = (
    "ds.prefetch(num_workers='auto') against a grid of hand-picked settings on the workloads of "
    "bench_parallel.py; each ratio is to the fastest setting of the grid (named as the reference). "
    "'auto, first epoch' includes starting the pool and the calibration; 'auto, later epoch' reuses the "
    "choice. The overhead workloads compare the same loop with and without batchup.profile."
)


def consume(it):
    total = 0
    for batch in it:
        total += len(batch[-1])
        batch[0][-1]
    return total


def timed(fn, clock=time.perf_counter):
    gc.collect()
    t0 = clock()
    fn()
    return clock() - t0


def interleaved(contenders, repeats, clock=time.perf_counter):
    """Time each ``(name, fn)`` once per repetition, in turn; return ``{name: median seconds}``.

    The order rotates by one place every repetition, so no contender always runs right
    after the same other one (a process pool still exiting, say).
    """
    times: dict = {name: [] for name, _ in contenders}
    for r in range(repeats):
        k = r % len(contenders)
        for name, fn in contenders[k:] + contenders[:k]:
            times[name].append(timed(fn, clock))
    return {name: statistics.median(ts) for name, ts in times.items()}


def grid_settings(workers_threads, workers_processes):
    out = [("serial", 0, None)]
    out += [(f"{n} threads", n, "thread") for n in workers_threads]
    out += [(f"{n} processes", n, "process") for n in workers_processes]
    return out


def run_setting(ds, n, kind, consumer=consume):
    if n == 0:
        return consumer(ds.batch_iterator(BS, shuffle=SEED))
    with ds.prefetch(n, kind=kind) as par:
        return consumer(par.batch_iterator(BS, shuffle=SEED))


class AutoRun:
    """``ds.prefetch("auto")``: the first epoch (calibration included) and a later one, per repetition."""

    def __init__(self, ds, consumer=consume):
        self.ds, self.consumer = ds, consumer
        self.firsts: list = []
        self.laters: list = []
        self.choices: list = []

    def run(self):
        t0 = time.perf_counter()
        with self.ds.prefetch("auto") as par:
            self.consumer(par.batch_iterator(BS, shuffle=SEED))
            self.firsts.append(time.perf_counter() - t0)
            self.choices.append(str(par.choice))
            self.laters.append(timed(lambda: self.consumer(par.batch_iterator(BS, shuffle=SEED + 1))))

    @property
    def first(self):
        return statistics.median(self.firsts)

    @property
    def later(self):
        return statistics.median(self.laters)


def autotune_workload(name, ds, settings, repeats, consumer=consume, note=""):
    auto = AutoRun(ds, consumer)
    contenders = [(label, (lambda n=n, k=k: run_setting(ds, n, k, consumer))) for label, n, k in settings]
    contenders.append(("auto", auto.run))
    med = interleaved(contenders, repeats)
    del med["auto"]
    fastest = min(med, key=med.get)
    rows = [contender(label, secs, note if label == "serial" else "") for label, secs in med.items()]
    choice = auto.choices[-1] if auto.choices else "n/a"
    rows.append(contender("auto, first epoch", auto.first, "calibration included; chose: " + _short(choice),
                          choices=auto.choices))
    rows.append(contender("auto, later epoch", auto.later, "the choice reused"))
    wl = workload(name, fastest, rows)
    wl["target"] = "auto within 1.10 x the fastest setting, and never slower than serial"
    for label, secs in (("first", auto.first), ("later", auto.later)):
        print(f"    auto ({label} epoch): {secs:.3f} s = {secs / med[fastest]:.2f} x {fastest}, "
              f"{secs / med['serial']:.2f} x serial", flush=True)
    print(f"    chose: {choice}", flush=True)
    return wl


def _short(choice):
    return choice.split(":")[0]


# -- the overlap workload of bench_parallel.py ---------------------------------------------------


def overlap_parts(n_batches):
    a = np.random.default_rng(0).random((400, 400))
    t0 = time.perf_counter()
    for _ in range(5):
        a @ a
    per = (time.perf_counter() - t0) / 5
    reps = max(1, int(round(0.020 / max(per, 1e-6))))

    def consumer(it):
        total = 0
        for batch in it:
            for _ in range(reps):
                a @ a
            total += len(batch[0])
        return total

    ds = ArrayDataSource([np.arange(n_batches * BS)]).map(sleep_20ms)
    return ds, consumer


def sleep_20ms(X):
    time.sleep(0.020)
    return (X,)


# -- the profiler's cost --------------------------------------------------------------------------


def overhead_workloads(repeats, quick):
    rows = []
    rng = np.random.default_rng(1)
    scale = 10 if quick else 1
    sets = [
        ("(a) gather, 1,000,000 x 32 float32, batch 256", [rng.random((1_000_000 // scale, 32), dtype=np.float32),
                                                          rng.integers(0, 10, 1_000_000 // scale).astype(np.int32)],
         256),
        ("(b) gather, 50,000 x 3x32x32 uint8, batch 128", [rng.integers(0, 256, (50_000 // scale, 3, 32, 32),
                                                                      dtype=np.uint8),
                                                         rng.integers(0, 10, 50_000 // scale).astype(np.int32)],
         128),
    ]
    out = []
    own = isolated_cost(20_000 if quick else 200_000, max(repeats, 21))
    out.append(own["workload"])
    for name, arrays, bs in sets:
        ds = ArrayDataSource(arrays)
        n = len(ds.batch_iterator(bs))
        loops = [
            ("plain", lambda ds=ds, bs=bs: consume(ds.batch_iterator(bs, shuffle=SEED))),
            ("profiled", lambda ds=ds, bs=bs: consume(batchup.profile(ds.batch_iterator(bs, shuffle=SEED)))),
        ]
        med = interleaved(loops, max(repeats, 41))
        # One thread: its CPU time is the cost without the time other jobs took the CPU away.
        cpu = interleaved(loops, max(repeats, 41), clock=time.process_time)
        out.append(_overhead(f"profiler overhead: {name}, serial", med, n, cpu, own["seconds_per_batch"]))
    X, y = make_data(10_000 if quick else 100_000)
    ds = ArrayDataSource([X, y]).map(augment_sample_loop, seed=SEED)

    def par(profiled):
        with ds.prefetch(2, buffer_size=8) as p:
            it = p.batch_iterator(BS, shuffle=SEED)
            consume(batchup.profile(it) if profiled else it)

    n = len(ds.batch_iterator(BS))
    med = interleaved([("plain", lambda: par(False)), ("profiled", lambda: par(True))], repeats)
    out.append(_overhead("profiler overhead: augmented epoch, 2 processes", med, n))
    rows.extend(out)
    return rows


def isolated_cost(n_batches, repeats):
    """The profiler's own time per batch: batches of 4 one-value rows, so little else is timed.

    On a noisy machine the difference of two ~0.1 s epochs (the gather workloads) varies by
    more than the profiler costs; this loop makes the profiler's share of the time large, so
    the difference per batch is stable, and the gather workloads' notes divide it by their
    own time per batch.
    """
    ds = ArrayDataSource([np.zeros(4 * n_batches, dtype=np.float32)])

    def run(profiled):
        it = ds.batch_iterator(4)
        for _ in batchup.profile(it) if profiled else it:
            pass

    med = interleaved([("plain", lambda: run(False)), ("profiled", lambda: run(True))], repeats)
    per = (med["profiled"] - med["plain"]) / n_batches
    name = f"profiler's own cost: {n_batches:,} batches of 4 values"
    print(f"  {name}: {per * 1e9:+.0f} ns per batch", flush=True)
    wl = workload(name, "plain", [
        contender("plain", med["plain"], f"{med['plain'] / n_batches * 1e9:.0f} ns per batch"),
        contender("profiled", med["profiled"], f"{per * 1e9:+.0f} ns per batch: the profiler's own time"),
    ])
    return {"workload": wl, "seconds_per_batch": per}


def _overhead(name, med, n_batches, cpu=None, own=None):
    extra = (med["profiled"] - med["plain"]) / n_batches * 1e6
    note = f"{extra:+.2f} us per batch"
    share = None
    if own is not None:
        share = own / (med["plain"] / n_batches)
        note = (f"the profiler's own {own * 1e9:.0f} ns per batch is {share:.1%} of this workload's "
                f"{med['plain'] / n_batches * 1e6:.1f} us per batch; difference of the medians: " + note)
    if cpu is not None:
        cpu_ratio = cpu["profiled"] / cpu["plain"]
        note += (f"; CPU time {cpu_ratio:.3f} x ({(cpu['profiled'] - cpu['plain']) / n_batches * 1e6:+.2f} us per "
                 "batch)")
    print(f"  {name}: {med['profiled'] / med['plain']:.3f} x ({note})", flush=True)
    return workload(name, "plain", [
        contender("plain", med["plain"], f"{n_batches} batches"),
        contender("profiled", med["profiled"], f"{note}; target <= 1.02 x",
                  cpu_seconds=None if cpu is None else cpu["profiled"], own_share=share),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser, default_repeats=5, quick_repeats=2)
    parser.add_argument("--only", choices=["augmented", "gather", "overlap", "overhead"], nargs="+",
                        help="run only these workloads")
    args = parser.parse_args()
    repeats = repeats_from(args)
    only = set(args.only or ["augmented", "gather", "overlap", "overhead"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"load average at start: {load}", flush=True)
    workloads = []
    if "augmented" in only:
        n = 10_000 if args.quick else 100_000
        X, y = make_data(n)
        ds = ArrayDataSource([X, y]).map(augment_sample_loop, seed=SEED)
        print("augmented epoch", flush=True)
        workloads.append(autotune_workload(
            "augmented epoch", ds, grid_settings([2, 4], [1, 2, 3]), repeats, note=f"{n} images, batch {BS}"))
    if "gather" in only:
        n = 5_000 if args.quick else 50_000
        X, y = make_data(n)
        print("in-memory gather", flush=True)
        workloads.append(autotune_workload(  # quick loops: more repetitions
            "in-memory gather", ArrayDataSource([X, y]), grid_settings([2], [2]), max(repeats, 7),
            note=f"{n} images, batch {BS}, no augmentation"))
    if "overlap" in only:
        nb = 20 if args.quick else 50
        ds, consumer = overlap_parts(nb)
        print("waiting loader", flush=True)
        workloads.append(autotune_workload(
            "waiting loader", ds, grid_settings([1, 2, 4, 8], [2]), repeats, consumer=consumer,
            note=f"{nb} batches; loader sleeps 20 ms, consumer ~20 ms of NumPy"))
    if "overhead" in only:
        workloads.extend(overhead_workloads(repeats, args.quick))
    end_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    description = DESCRIPTION
    if load is not None and end_load is not None:
        description += (f" The 1-minute load average was {load:.1f} at the start of this run and {end_load:.1f} at "
                        "its end; on a 2-core machine anything above 0 means other jobs took CPU time, and the "
                        "settings compared here compete for the same cores.")
    path = write_results("autotune", workloads, args.out, quick=bool(args.quick), repeats=repeats,
                         title=TITLE, description=description, load_average=[load, end_load])
    print(format_table(json.loads(path.read_text())))
    print(f"load average at end: {end_load}")
    print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
