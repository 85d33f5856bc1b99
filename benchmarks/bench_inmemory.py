"""Benchmark one shuffled epoch over in-memory NumPy arrays.

Workloads (``--quick`` shrinks both tenfold):

(a) 1,000,000 x 32 float32 samples + int32 labels, batch 256;
(b) 50,000 x 3x32x32 uint8 images + int32 labels, batch 128.

Contenders, each warmed up once and then timed ``--repeats`` times (median kept),
each generating its permutation inside the timed region and touching every
batch it receives:

- ``np.take loop (gather floor)``: a hand-written loop over one permutation
  with ``np.take(X, idx, axis=0)`` -- the reference of every ratio;
- ``fancy-indexing loop``: the same loop with ``X[idx]``;
- ``batchup, shuffle=<int seed>`` and ``batchup, shuffle=RandomState``:
  ``ArrayDataSource([X, y]).batch_iterator(bs, shuffle=...)``;
- ``BatchUp 0.2.3`` in its own process and virtual environment
  (``benchmarks/.venv-batchup023``, created on first use);
- ``torch DataLoader`` (per-sample collate) and ``torch DataLoader, batch
  sampler`` (one ``TensorDataset[list_of_indices]`` per batch), each in its own
  process, when torch is installed.

Run ``python benchmarks/bench_inmemory.py`` (add ``--quick`` for a small run);
results go to ``benchmarks/results/bench_inmemory.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

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

SEED = 12345
FLOOR = "np.take loop (gather floor)"
VENV_023 = BENCH_DIR / ".venv-batchup023"
WORKER_023 = BENCH_DIR / "_batchup023_worker.py"
SUBPROCESS_TIMEOUT = 3600.0
TITLE = "In-memory arrays: one shuffled epoch"
DESCRIPTION = (
    "One shuffled pass over NumPy arrays held in memory, each batch touched once. The reference is a "
    "hand-written loop that slices one permutation and calls np.take(X, idx, axis=0) per batch: the cost of "
    "the gather alone. Torch and BatchUp 0.2.3 run in processes of their own."
)

#: name, number of samples, sample shape, dtype, batch size
WORKLOADS = [
    ("a", 1_000_000, (32,), np.float32, 256),
    ("b", 50_000, (3, 32, 32), np.uint8, 128),
]


def make_data(n: int, shape: tuple, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(X, y)``: ``n`` random samples of ``shape``/``dtype`` and int32 labels."""
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        X = rng.integers(0, 256, size=(n,) + shape, dtype=dtype)
    else:
        X = rng.standard_normal(size=(n,) + shape, dtype=dtype)
    y = rng.integers(0, 10, size=n, dtype=np.int32)
    return X, y


def workload_name(key: str, n: int, shape: tuple, dtype: type, bs: int) -> str:
    dims = "x".join(str(s) for s in shape)
    return f"({key}) {n:,} x {dims} {np.dtype(dtype).name} + int32 labels, batch {bs}"


# -- in-process contenders -----------------------------------------------------------------


def floor_loop(X: np.ndarray, y: np.ndarray, bs: int) -> Callable[[], int]:
    def run() -> int:
        perm = np.random.default_rng(SEED).permutation(len(X))
        total = 0
        for i in range(0, len(X), bs):
            idx = perm[i : i + bs]
            xb = np.take(X, idx, axis=0)
            yb = np.take(y, idx, axis=0)
            total += len(xb)
            yb[-1]
        return total

    return run


def fancy_loop(X: np.ndarray, y: np.ndarray, bs: int) -> Callable[[], int]:
    def run() -> int:
        perm = np.random.default_rng(SEED).permutation(len(X))
        total = 0
        for i in range(0, len(X), bs):
            idx = perm[i : i + bs]
            xb = X[idx]
            yb = y[idx]
            total += len(xb)
            yb[-1]
        return total

    return run


def batchup_loop(X: np.ndarray, y: np.ndarray, bs: int, rng_kind: str) -> Callable[[], int]:
    from batchup.data_source import ArrayDataSource

    def run() -> int:
        shuffle = SEED if rng_kind == "seed" else np.random.RandomState(SEED)
        total = 0
        for xb, yb in ArrayDataSource([X, y]).batch_iterator(bs, shuffle=shuffle):
            total += len(xb)
            yb[-1]
        return total

    return run


def timed(name: str, run: Callable[[], int], n: int, repeats: int, note: str) -> dict:
    best, times, total = median_of(run, repeats)
    if total != n:
        raise RuntimeError(f"{name} consumed {total} samples, expected {n}")
    print(f"  {name}: {best:.4f} s", flush=True)
    return contender(name, best, note, times=times)


# -- contenders in their own process ------------------------------------------------------------


def torch_worker(args: argparse.Namespace) -> None:
    """Child-process side: time one torch DataLoader variant and print JSON."""
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    X = torch.from_numpy(np.load(args.data / "X.npy"))
    y = torch.from_numpy(np.load(args.data / "y.npy"))
    dataset = TensorDataset(X, y)
    bs = args.batch_size

    def run() -> int:
        gen = torch.Generator()
        gen.manual_seed(SEED)
        if args.worker == "torch-sample":
            loader = DataLoader(dataset, batch_size=bs, shuffle=True, generator=gen)
        else:
            # TensorDataset.__getitem__ accepts a list of indices, so a BatchSampler
            # with batch_size=None hands each whole batch to one indexing call.
            sampler = BatchSampler(RandomSampler(dataset, generator=gen), batch_size=bs, drop_last=False)
            loader = DataLoader(dataset, sampler=sampler, batch_size=None)
        total = 0
        for xb, yb in loader:
            total += len(xb)
            yb[-1]
        return total

    best, times, total = median_of(run, args.repeats)
    emit_json(
        {
            "seconds": best,
            "times": times,
            "samples": total,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
    )


def torch_contender(kind: str, data_dir: Path, bs: int, n: int, repeats: int) -> dict:
    if kind == "torch-sample":
        name = "torch DataLoader"
        note = "DataLoader(TensorDataset(X, y), batch_size=bs, shuffle=True): per-sample fetch + collate"
    else:
        name = "torch DataLoader, batch sampler"
        note = "DataLoader(TensorDataset, sampler=BatchSampler(RandomSampler), batch_size=None)"
    if importlib.util.find_spec("torch") is None:
        return contender(name, None, "torch is not installed")
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--data", str(data_dir),
        "--batch-size", str(bs), "--repeats", str(repeats),
    ]
    res = run_json_subprocess(cmd, timeout=SUBPROCESS_TIMEOUT)
    return _from_worker(name, res, n, note + "; num_workers=0, own process", lambda r: f"torch {r['torch']}")


def _venv_python() -> Path:
    return VENV_023 / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _batchup023_ready(python: Path) -> tuple[bool, str]:
    """Return whether ``python`` imports ``batchup.data_source`` of version 0.2.3."""
    code = "import importlib.metadata as m, batchup.data_source; print(m.version('batchup'))"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=VENV_023)
    return proc.returncode == 0 and proc.stdout.strip() == "0.2.3", proc.stderr.strip()[-300:]


def ensure_batchup023(install: bool) -> tuple[Path | None, str]:
    """Return the Python of the BatchUp 0.2.3 venv (creating it if allowed), or ``(None, why)``."""
    python = _venv_python()
    if python.exists() and _batchup023_ready(python)[0]:
        return python, ""
    if not install:
        return None, f"{VENV_023.name} is missing or broken and --no-install was given"
    print(f"creating {VENV_023.name} with batchup==0.2.3 ...", flush=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    same_numpy = f"numpy=={np.__version__}"  # only the library should differ between processes
    attempts = [
        # BatchUp 0.2.3 with its declared dependencies (numpy, scipy, six, tables, joblib).
        [pip + ["batchup==0.2.3", same_numpy]],
        # Fallback: data_source needs only numpy and six.
        [pip + ["--no-deps", "batchup==0.2.3"], pip + [same_numpy, "six"]],
    ]
    why = ""
    for steps in attempts:
        steps = [[sys.executable, "-m", "venv", "--clear", str(VENV_023)]] + steps
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                why = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
                break
        else:
            ok, err = _batchup023_ready(python)
            if ok:
                return python, ""
            why = f"batchup 0.2.3 does not import in its venv: {err}"
    return None, f"could not set up BatchUp 0.2.3: {why}"


def batchup023_contender(python: Path | None, why: str, data_dir: Path, bs: int, n: int, repeats: int) -> dict:
    name = "BatchUp 0.2.3"
    if python is None:
        return contender(name, None, why)
    cmd = [
        str(python), str(WORKER_023), "--data", str(data_dir), "--batch-size", str(bs),
        "--repeats", str(repeats), "--seed", str(SEED),
    ]
    res = run_json_subprocess(cmd, timeout=SUBPROCESS_TIMEOUT)
    if "error" not in res and not Path(res["batchup_file"]).is_relative_to(VENV_023.resolve()):
        res = {"error": f"worker imported batchup from {res['batchup_file']}, not from the 0.2.3 venv"}
    note = "ArrayDataSource([X, y]).batch_iterator(bs, shuffle=RandomState(seed)); own process and venv"
    return _from_worker(name, res, n, note, lambda r: f"batchup {r['batchup_version']}")


def _from_worker(name: str, res: dict, n: int, note: str, version: Callable[[dict], str]) -> dict:
    if "error" in res:
        print(f"  {name}: failed ({res['error']})", flush=True)
        return contender(name, None, f"failed: {res['error']}")
    if res["samples"] != n:
        raise RuntimeError(f"{name} consumed {res['samples']} samples, expected {n}")
    print(f"  {name}: {res['seconds']:.4f} s", flush=True)
    return contender(name, res["seconds"], f"{note} ({version(res)})", times=res["times"])


# -- driver ------------------------------------------------------------------------------------


def run_workload(key: str, n: int, shape: tuple, dtype: type, bs: int, repeats: int,
                 bu023: tuple[Path | None, str], tmp: Path) -> dict:
    name = workload_name(key, n, shape, dtype, bs)
    print(f"{name}: generating data", flush=True)
    X, y = make_data(n, shape, dtype)
    data_dir = tmp / key
    data_dir.mkdir()
    np.save(data_dir / "X.npy", X)
    np.save(data_dir / "y.npy", y)
    contenders = [
        timed(FLOOR, floor_loop(X, y, bs), n, repeats,
              "perm = default_rng(seed).permutation(n); np.take(X, perm[i:i+bs], axis=0) per batch"),
        timed("fancy-indexing loop", fancy_loop(X, y, bs), n, repeats,
              "the same loop with X[idx] (what BatchUp 0.2.3 does per batch)"),
        timed("batchup, shuffle=<int seed>", batchup_loop(X, y, bs, "seed"), n, repeats,
              "ArrayDataSource([X, y]).batch_iterator(bs, shuffle=seed)"),
        timed("batchup, shuffle=RandomState", batchup_loop(X, y, bs, "rng"), n, repeats,
              "batch_iterator(bs, shuffle=np.random.RandomState(seed)); legacy MT19937 permutation"),
    ]
    del X, y
    contenders.append(batchup023_contender(*bu023, data_dir, bs, n, repeats))
    contenders.append(torch_contender("torch-sample", data_dir, bs, n, repeats))
    contenders.append(torch_contender("torch-batch", data_dir, bs, n, repeats))
    params = {"samples": n, "sample_shape": list(shape), "dtype": np.dtype(dtype).name, "batch_size": bs}
    return workload(name, FLOOR, contenders, params=params)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, default_repeats=11)
    parser.add_argument("--no-install", action="store_true",
                        help="do not create the BatchUp 0.2.3 venv if it is missing (the contender is skipped)")
    parser.add_argument("--worker", choices=["torch-sample", "torch-batch"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repeats = repeats_from(args)
    if args.worker:
        args.repeats = repeats
        torch_worker(args)
        return 0

    import batchup

    bu023 = ensure_batchup023(install=not args.no_install)
    scale = 10 if args.quick else 1
    workloads = []
    with tempfile.TemporaryDirectory(prefix="bench_inmemory_") as tmp:
        for key, n, shape, dtype, bs in WORKLOADS:
            workloads.append(run_workload(key, n // scale, shape, dtype, bs, repeats, bu023, Path(tmp)))
    versions = {"numpy": np.__version__, "batchup": batchup.__version__}
    path = write_results(
        "inmemory", workloads, args.out, title=TITLE, description=DESCRIPTION,
        quick=args.quick, repeats=repeats, versions=versions,
    )
    print()
    print(format_table(json.loads(path.read_text(encoding="utf-8"))))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
