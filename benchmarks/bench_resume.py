"""Resume cost: restoring an iterator at batch k versus replaying k batches.

Restoring recomputes the position (one permutation derived from the seed and
epoch) instead of replaying the stream, so its cost should not grow with k.
Workload: 1,000,000 x 32 float32 + int32 labels, batch 256, repeats=-1,
shuffled; positions k = 100, 10,000 and 100,000 batches (the last is in
epoch 25). Contenders per k: replay (make a fresh iterator and draw k
batches, the reference), restore from an int-seed state, restore from a
RandomState state. Each restore is timed up to and including the first batch.

Run: ``python benchmarks/bench_resume.py [--quick]``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import add_common_args, contender, format_table, median_of, repeats_from, workload, write_results  # noqa: E402

from batchup.sources import ArrayDataSource  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_repeats=3, quick_repeats=1)
    args = parser.parse_args()
    repeats = repeats_from(args)
    n = 100_000 if args.quick else 1_000_000
    positions = [100, 1_000] if args.quick else [100, 10_000, 100_000]
    rng = np.random.default_rng(0)
    X = rng.random((n, 32), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    ds = ArrayDataSource([X, y], repeats=-1)
    bs = 256

    def replay(k, shuffle):
        it = ds.batch_iterator(bs, shuffle=shuffle())
        for _ in itertools.islice(it, k):
            pass
        return next(it)

    def state_at(k, shuffle):
        it = ds.batch_iterator(bs, shuffle=shuffle())
        for _ in itertools.islice(it, k):
            pass
        return json.loads(json.dumps(it.state_dict()))

    def restore(state, shuffle):
        it = ds.batch_iterator(bs, shuffle=shuffle())
        it.load_state_dict(state)
        return next(it)

    seeded = lambda: 1234  # noqa: E731
    legacy = lambda: np.random.RandomState(1234)  # noqa: E731
    workloads = []
    for k in positions:
        s_seed, s_rs = state_at(k, seeded), state_at(k, legacy)
        t_replay, _, a = median_of(lambda k=k: replay(k, seeded), repeats)
        t_seed, _, b = median_of(lambda s=s_seed: restore(s, seeded), repeats)
        t_rs, _, c = median_of(lambda s=s_rs: restore(s, legacy), repeats)
        d = replay(k, legacy)
        assert (a[0] == b[0]).all() and (c[0] == d[0]).all(), "restored batch differs from the replayed one"
        workloads.append(workload(
            f"resume at batch {k:,} ({n:,} x 32 float32, batch {bs})", "replay k batches",
            [contender("replay k batches", t_replay, "fresh iterator, draw k batches, then one more"),
             contender("restore (int seed)", t_seed, f"state {len(json.dumps(s_seed))} bytes of JSON"),
             contender("restore (RandomState)", t_rs, f"state {len(json.dumps(s_rs))} bytes of JSON")]))
    path = write_results("resume", workloads, args.out, quick=bool(args.quick), repeats=repeats)
    print(format_table(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
