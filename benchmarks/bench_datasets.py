"""Loading CIFAR-10: from batchup's memory-mapped cache versus from the python tarball.

Workload: a generated tarball in the exact format of ``cifar-10-python.tar.gz``
(``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``, protocol-2 pickles
of 10,000 x 3,072 uint8 images each; random pixels, so gzip barely shrinks
it: about 180 MB). ``--quick`` uses a tenth of the samples. Contenders, each
warmed up once, median of ``--repeats``:

- ``from the tarball`` (reference): open the tar.gz and unpickle every batch
  into NumPy arrays -- what a loader without a cache does on every run;
- ``batchup first use``: SHA-256 of the tarball, safe extraction, restricted
  unpickling and conversion to the ``.npy`` cache, then opening it (what
  ``CIFAR10()`` does once, after the download);
- ``batchup cached, open``: ``CIFAR10(n_val=5000)`` with the cache present
  (memory-mapped: no pixel is read);
- ``batchup cached, open + read all``: the same, then one pass over every
  pixel of the training and test sets (page cache warm).

Run ``python benchmarks/bench_datasets.py [--quick]``; results go to
``benchmarks/results/bench_datasets.json``.
"""
from __future__ import annotations

import argparse
import io
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, contender, format_table, median_of, repeats_from, workload, write_results  # noqa: E402

REFERENCE = "from the tarball"


def make_tarball(path: Path, per_batch: int, seed: int = 0) -> None:
    """Write a CIFAR-10 python tarball with 5 training batches and 1 test batch of ``per_batch`` images."""
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {"batch_label": name, "labels": rng.integers(0, 10, per_batch).tolist(),
                     "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                     "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def load_from_tarball(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read every batch straight out of the tarball (trusted input: plain pickle)."""
    Xs, ys = [], []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile():
                batch = pickle.loads(tar.extractfile(member).read(), encoding="latin1")
                Xs.append(np.asarray(batch["data"]).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(batch["labels"], dtype=np.int32))
    return np.concatenate(Xs), np.concatenate(ys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_repeats=3, quick_repeats=2)
    args = parser.parse_args()
    repeats = repeats_from(args)
    per_batch = 1000 if args.quick else 10000
    n = 6 * per_batch

    work = Path(tempfile.mkdtemp(prefix="batchup-bench-datasets-"))
    os.environ["BATCHUP_HOME"] = str(work / "home")
    os.environ["TQDM_DISABLE"] = "1"
    from batchup import config
    from batchup.datasets import cifar10

    config.reset_config()
    try:
        tarball = work / "cifar-10-python.tar.gz"
        make_tarball(tarball, per_batch)
        size_mb = tarball.stat().st_size / 1e6
        cache = config.get_data_path(cifar10.CACHE)

        def first_use():
            cifar10.delete_cache()
            config.compute_sha256(str(tarball))
            cifar10.convert_cifar10(str(tarball), cache)
            return cifar10.CIFAR10(n_val=per_batch // 2)

        def cached_open():
            return cifar10.CIFAR10(n_val=per_batch // 2)

        def cached_read_all():
            ds = cifar10.CIFAR10(n_val=0)
            return int(ds.train_X_u8.sum(dtype=np.uint64)) + int(ds.test_X_u8.sum(dtype=np.uint64))

        t_ref, _, (X, y) = median_of(lambda: load_from_tarball(tarball), repeats)
        assert X.shape == (n, 3, 32, 32)
        t_first, _, _ = median_of(first_use, repeats)
        t_open, _, ds = median_of(cached_open, repeats)
        assert ds.test_X_u8.shape == (per_batch, 3, 32, 32)
        t_read, _, _ = median_of(cached_read_all, repeats)
        contenders = [
            contender(REFERENCE, t_ref, f"tarfile + pickle for all {n} images ({size_mb:.0f} MB tar.gz)"),
            contender("batchup first use", t_first, "SHA-256 + safe extract + restricted unpickle + .npy write"),
            contender("batchup cached, open", t_open, "memory-mapped .npy; no pixel read yet"),
            contender("batchup cached, open + read all", t_read, "one pass over every pixel, page cache warm"),
        ]
        wl = workload(f"CIFAR-10 load, {n} images", REFERENCE, contenders)
        out = write_results("datasets", [wl], args.out, quick=args.quick, repeats=repeats)
        import json

        print(format_table(json.loads(out.read_text())))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
