"""Time one shuffled epoch with the original BatchUp 0.2.3 (run inside its own virtual environment).

``bench_inmemory.py`` writes ``X.npy`` and ``y.npy`` to a temporary directory and
runs this script with the Python of ``benchmarks/.venv-batchup023``, where
``pip install batchup==0.2.3`` put the original package. The script prints one
JSON line: the median time, all times, and which ``batchup`` it imported, so
the parent can check it did not pick up this repository's package.
"""
from __future__ import annotations

import argparse
import importlib.metadata
from pathlib import Path

import numpy as np
from _common import emit_json, median_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="directory holding X.npy and y.npy")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import batchup
    from batchup import data_source

    X = np.load(args.data / "X.npy")
    y = np.load(args.data / "y.npy")
    bs, seed = args.batch_size, args.seed

    def one_epoch() -> int:
        ds = data_source.ArrayDataSource([X, y])
        total = 0
        for xb, yb in ds.batch_iterator(bs, shuffle=np.random.RandomState(seed)):
            total += len(xb)
            yb[-1]
        return total

    best, times, total = median_of(one_epoch, args.repeats)
    emit_json(
        {
            "seconds": best,
            "times": times,
            "samples": total,
            "batchup_version": importlib.metadata.version("batchup"),
            "batchup_file": str(Path(batchup.__file__).resolve()),
            "numpy": np.__version__,
        }
    )


if __name__ == "__main__":
    main()
