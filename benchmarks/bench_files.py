"""Files on disk: one shuffled epoch of small PNG and .npy files, FileArray vs a plain loop.

Workloads: 2,048 files (1,024 with ``--quick``) of one 32 x 32 RGB uint8
image each, as PNG and as .npy, and 512 PNGs (128) of 256 x 256 RGB, written
by this script to a temporary directory (deleted at the end), with an int
label per file; one shuffled epoch in batches of 64. The files sit in the
page cache (they were just written), so this measures the per-file overhead
(open, decode, stack) rather than the disk. Contenders:

- ``plain loop`` (reference): per batch, ``np.stack([load(path) for path in
  paths[idx]])`` over a NumPy permutation -- the hand-written baseline;
- ``Keras Sequence tutorial``: the hand-written ``keras.utils.Sequence`` of
  the Keras tutorial on data generators, one ``DataFrame.iloc`` lookup and
  one load per row;
- ``FileArray``: ``ArrayDataSource([FileArray(paths, load), labels])``
  iterated with ``shuffle=seed``;
- ``FileArray max_workers=2``: the same with a batch's files read in two
  threads.

Run: ``python benchmarks/bench_files.py [--quick]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import add_common_args, contender, format_table, median_of, repeats_from, workload, write_results  # noqa: E402

from batchup.arrays import FileArray, read_image, read_npy  # noqa: E402
from batchup.sources import ArrayDataSource  # noqa: E402

BATCH = 64


def make_files(root: Path, n: int, kind: str, side: int) -> list:
    """Write ``n`` side x side RGB images as PNG or .npy files; return their names."""
    rng = np.random.default_rng(0)
    names = []
    if kind == "png":
        from PIL import Image
    for i in range(n):
        img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        name = f"img_{i:05d}.{kind}"
        if kind == "png":
            Image.fromarray(img).save(root / name)
        else:
            np.save(root / name, img)
        names.append(name)
    return names


def plain_loop(root: Path, names: list, labels: np.ndarray, load) -> int:  # noqa: ANN001
    order = np.random.default_rng(1).permutation(len(names))
    paths = np.array([os.path.join(root, n) for n in names])
    seen = 0
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        x = np.stack([load(p) for p in paths[idx]])
        y = labels[idx]
        seen += len(x) + 0 * int(y[0])
    return seen


def sequence_tutorial(root: Path, names: list, labels: np.ndarray, load) -> int:  # noqa: ANN001
    import pandas as pd

    df = pd.DataFrame({"image": names, "label": labels})
    order = np.random.default_rng(1).permutation(len(df))
    seen = 0
    for b in range(int(np.ceil(len(df) / BATCH))):
        idx = order[b * BATCH : (b + 1) * BATCH]
        x = np.empty((len(idx),) + load(os.path.join(root, df.iloc[0, 0])).shape, dtype=np.uint8)
        y = np.empty(len(idx), dtype=np.int64)
        for k, i in enumerate(idx):
            x[k] = load(os.path.join(root, df.iloc[i, 0]))
            y[k] = df.iloc[i, 1]
        seen += len(x)
    return seen


def file_array(root: Path, names: list, labels: np.ndarray, load, workers) -> int:  # noqa: ANN001
    ds = ArrayDataSource([FileArray(names, load, base_dir=root, max_workers=workers), labels])
    return sum(len(x) for x, _ in ds.batch_iterator(BATCH, shuffle=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_repeats=5, quick_repeats=2)
    args = parser.parse_args()
    repeats = repeats_from(args)
    small = 1024 if args.quick else 2048
    large = 128 if args.quick else 512
    cases = [("png", read_image, small, 32), ("npy", read_npy, small, 32), ("png", read_image, large, 256)]
    workloads = []
    tmp = Path(tempfile.mkdtemp(prefix="batchup-bench-files-"))
    try:
        for kind, load, n, side in cases:
            root = tmp / f"{kind}{side}"
            root.mkdir()
            names = make_files(root, n, kind, side)
            labels = np.arange(n) % 10
            data = (root, names, labels, load)
            runs = {
                "plain loop": partial(plain_loop, *data),
                "Keras Sequence tutorial": partial(sequence_tutorial, *data),
                "FileArray": partial(file_array, *data, None),
                "FileArray max_workers=2": partial(file_array, *data, 2),
            }
            contenders = []
            for name, run in runs.items():
                secs, _, seen = median_of(run, repeats)
                if seen != n:
                    raise SystemExit(f"{name} saw {seen} samples, expected {n}")
                contenders.append(contender(name, secs, f"{n} {kind} files of {side}x{side}x3, batch {BATCH}"))
            title = f"shuffled epoch over {n} {kind.upper()} files of {side}x{side}x3"
            workloads.append(workload(title, "plain loop", contenders))
            print(format_table({"benchmark": "files", "machine": "", "workloads": workloads[-1:]}), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = write_results("files", workloads, args.out, quick=bool(args.quick), repeats=repeats)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
