"""Per-batch overhead of the framework adapters against iterating the batchup source directly.

Workload: 100 batches of 128 x 3x32x32 float32 images (+ int64 labels) per
epoch, shuffled with an int seed, in one process (no workers). Per framework
the reference is the plain loop over ``source.batch_iterator`` (plus the
framework's own conversion where the adapter does one: ``torch.from_numpy``,
``jax.device_put``), so the ratio is the adapter's own cost. Target: <= 1.05.

TensorFlow is not in the test extras: the tf.data workload runs in this
interpreter if TensorFlow imports, else in ``--tf-python`` (an interpreter
with batchup and TensorFlow installed), else it is listed as not run.

Run: ``python benchmarks/bench_adapters.py [--quick] [--tf-python PATH]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
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

from batchup.sources import ArrayDataSource  # noqa: E402

BATCH = 128
SEED = 7


def make_source(n_batches: int) -> ArrayDataSource:
    rng = np.random.default_rng(0)
    X = rng.random((n_batches * BATCH, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, n_batches * BATCH)
    return ArrayDataSource([X, y])


def _drain(it) -> int:
    n = 0
    for _ in it:
        n += 1
    return n


def direct(src):
    return _drain(src.batch_iterator(BATCH, shuffle=SEED))


def bench_keras(src, repeats):
    try:
        from batchup.adapters.keras import as_generator, as_py_dataset

        ds = as_py_dataset(src, BATCH, shuffle=SEED)
    except ImportError as err:
        return [contender("direct batch_iterator", median_of(lambda: direct(src), repeats)[0]),
                contender("PyDataset items", None, f"Keras missing: {err}")]

    def items():
        ds.set_epoch(0)
        return _drain(ds[i] for i in range(len(ds)))

    return [
        contender("direct batch_iterator", median_of(lambda: direct(src), repeats)[0], "for b in source.batch_iterator"),
        contender("PyDataset items", median_of(items, repeats)[0], "ds[i] for i in range(len(ds)), as Keras reads it"),
        contender("as_generator", median_of(lambda: _drain(as_generator(src, BATCH, shuffle=SEED, epochs=1)),
                                          repeats)[0], "one pass of the generator"),
    ]


def bench_torch(src, repeats):
    try:
        import torch

        from batchup.adapters.torch import as_iterable_dataset, iter_tensors
    except ImportError as err:
        return [contender("direct + from_numpy", None, f"torch missing: {err}")]

    def reference():
        return _drain((torch.from_numpy(x), torch.from_numpy(y)) for x, y in src.batch_iterator(BATCH, shuffle=SEED))

    ds = as_iterable_dataset(src, BATCH, shuffle=SEED, shard=None)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    return [
        contender("direct + from_numpy", median_of(reference, repeats)[0], "hand-written loop"),
        contender("DataLoader(IterableDataset)", median_of(lambda: _drain(loader), repeats)[0],
                  "DataLoader(batch_size=None, num_workers=0)"),
        contender("iter_tensors", median_of(lambda: _drain(iter_tensors(src.batch_iterator(BATCH, shuffle=SEED))),
                                          repeats)[0], "plain iterator of tensors"),
    ]


def bench_jax(src, repeats):
    try:
        import jax

        from batchup.adapters.jax import prefetch_to_device
    except ImportError as err:
        return [contender("direct + device_put", None, f"JAX missing: {err}")]

    def reference():
        n = 0
        for x, y in src.batch_iterator(BATCH, shuffle=SEED):
            jax.block_until_ready((jax.device_put(x), jax.device_put(y)))
            n += 1
        return n

    def prefetched():
        n = 0
        for batch in prefetch_to_device(src.batch_iterator(BATCH, shuffle=SEED), size=2):
            jax.block_until_ready(batch)
            n += 1
        return n

    return [
        contender("direct + device_put", median_of(reference, repeats)[0], "hand-written loop, CPU device"),
        contender("prefetch_to_device(size=2)", median_of(prefetched, repeats)[0], "deque of device_put batches"),
        contender("direct (no transfer)", median_of(lambda: direct(src), repeats)[0], "for scale: NumPy only"),
    ]


def tf_worker(n_batches: int, repeats: int) -> dict:
    """Time the tf.data adapter against the direct loop in this interpreter."""
    import tensorflow as tf

    from batchup.adapters.tf import as_tf_dataset

    src = make_source(n_batches)
    ds = as_tf_dataset(src, BATCH, shuffle=SEED)

    def reference():
        return _drain((tf.convert_to_tensor(x), tf.convert_to_tensor(y)) for x, y in src.batch_iterator(BATCH, shuffle=SEED))

    # tf.data's own cost: from_generator over batches that are already made.
    made = list(src.batch_iterator(BATCH, shuffle=SEED))
    bare = tf.data.Dataset.from_generator(lambda: iter(made), output_signature=ds.element_spec)
    # The same live batchup iterator wrapped by hand: what the adapter adds on top of it.
    live = tf.data.Dataset.from_generator(
        lambda: src.batch_iterator(BATCH, shuffle=SEED), output_signature=ds.element_spec)
    return {
        "live": median_of(lambda: _drain(live), repeats)[0],
        "direct": median_of(reference, repeats)[0],
        "tf": median_of(lambda: _drain(ds), repeats)[0],
        "bare": median_of(lambda: _drain(bare), repeats)[0],
        "version": tf.__version__,
    }


def bench_tf(n_batches, repeats, tf_python):
    try:
        import tensorflow  # noqa: F401

        res = tf_worker(n_batches, repeats)
    except ImportError:
        if tf_python:
            res = run_json_subprocess(
                [tf_python, __file__, "--tf-worker", str(n_batches), "--repeats", str(repeats)], timeout=900)
        else:
            res = {"error": "TensorFlow is not installed here (pip install batchup[tf], or pass --tf-python)"}
    if "error" in res:
        return [contender("direct + convert_to_tensor", None, res["error"]),
                contender("as_tf_dataset", None, res["error"]),
                contender("from_generator of ready batches", None, res["error"]),
                contender("from_generator of batch_iterator", None, res["error"])]
    return [
        contender("direct + convert_to_tensor", res["direct"], f"hand-written loop, TF {res['version']}"),
        contender("as_tf_dataset", res["tf"], "from_generator + assert_cardinality, iterated eagerly"),
        contender("from_generator of ready batches", res["bare"], "tf.data's own per-element cost, no batchup"),
        contender("from_generator of batch_iterator", res["live"],
                  "a live batchup iterator wrapped by hand: the adapter's overhead is the gap to as_tf_dataset"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_repeats=5, quick_repeats=2)
    parser.add_argument("--tf-python", default=None, help="an interpreter with batchup and TensorFlow installed")
    parser.add_argument("--tf-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = repeats_from(args)
    if args.tf_worker is not None:
        emit_json(tf_worker(args.tf_worker, repeats))
        return
    n_batches = 20 if args.quick else 100
    src = make_source(n_batches)
    name = f"{n_batches} batches of {BATCH} x 3x32x32 float32 + labels, shuffled"
    workloads = [
        workload(f"Keras: {name}", "direct batch_iterator", bench_keras(src, repeats)),
        workload(f"PyTorch: {name}", "direct + from_numpy", bench_torch(src, repeats)),
        workload(f"JAX (CPU): {name}", "direct + device_put", bench_jax(src, repeats)),
        workload(f"tf.data: {name}", "direct + convert_to_tensor", bench_tf(n_batches, repeats, args.tf_python)),
    ]
    for wl in workloads:  # the absolute cost too: ratios of millisecond loops are noisy
        ref = next(c for c in wl["contenders"] if c["name"] == wl["reference"])
        for c in wl["contenders"]:
            ok = c["seconds"] is not None and ref["seconds"] is not None
            c["overhead_us_per_batch"] = (c["seconds"] - ref["seconds"]) / n_batches * 1e6 if ok else None
    path = write_results("adapters", workloads, args.out, quick=bool(args.quick), repeats=repeats)
    print(format_table(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
