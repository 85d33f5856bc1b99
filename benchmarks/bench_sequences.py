"""Variable-length sequences: padding efficiency and speed of padding, packing and bucketing.

Two length distributions, 100,000 samples each (10,000 with ``--quick``),
every length clipped to [1, 1024] so that one row of 1024 fits any sample:

* **stdlib paragraphs**, a real distribution that needs no download: the
  whitespace-token counts of the paragraphs (blocks between blank lines) of
  the ``.py`` files of this interpreter's standard library
  (``sysconfig.get_paths()["stdlib"]``, without ``site-packages``). With at
  least as many paragraphs as samples, a seeded random subset is taken
  without replacement; with fewer, the samples are drawn with replacement.
* **lognormal**: median 60, sigma 0.8, rounded.

The samples are int32 token ids in a :class:`~batchup.sequences.RaggedArray`.
One shuffled epoch per contender (iterator built inside the timed region;
median of N runs). Figures: *padding efficiency* (real tokens / tokens in the
padded or packed batches), batches/s and real tokens/s.

Contenders:

* ``naive: shuffled, padded to the longest``, the reference:
  ``ArrayDataSource([ra]).map(PadBatch())``, 64 samples per batch;
* ``batchup packing``: ``ArrayDataSource([ra]).map(PackSequences(1024))``,
  first-fit decreasing over batches of ``64 * 1024 / mean length`` samples
  (about 64 rows' worth, like Grain's 64 packing bins below);
* ``batchup count bucketing``: ``BucketSampler(lengths, batch_size=64)``
  plus ``PadBatch()`` (each batch padded to its longest sample);
* ``batchup token-budget bucketing``: ``BucketSampler(lengths,
  max_tokens=8192)`` plus ``PadBatch()``;
* ``batchup token-budget bucketing, static shapes``: at most 16 buckets and
  ``PadToBucket`` (each batch padded to its bucket's length, so a compiler
  sees at most ``len(sampler.batch_shapes())`` shapes). The samplers choose
  their buckets once, outside the timed region (the note gives the time),
  and the script checks that two shuffled epochs hold every sample once;
* ``tf.data bucket_by_sequence_length``: runs here if TensorFlow imports,
  else in ``--tf-python`` or ``benchmarks/.venv-tf/bin/python`` if it exists
  (create it with ``python -m venv benchmarks/.venv-tf`` and
  ``benchmarks/.venv-tf/bin/pip install tensorflow-cpu``), else not run;
* ``Grain FirstFitPackIterDataset``: in ``--grain-python`` or
  ``benchmarks/.venv-grain``, which the script creates with
  ``pip install grain`` on first use (``--no-install`` skips it).

A full run also draws efficiency against real tokens/s, one panel per
distribution, to ``docs/_static/bench_sequences_efficiency.png`` (``--plot
PATH`` elsewhere; ``--quick`` draws only when given ``--plot``).

Run: ``python benchmarks/bench_sequences.py [--quick] [--repeats N] [--tf-python PATH]
[--grain-python PATH] [--no-install] [--plot PATH]``.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    BENCH_DIR,
    add_common_args,
    contender,
    emit_json,
    median_of,
    repeats_from,
    run_json_subprocess,
    workload,
    write_results,
)

SEED = 0
N_SAMPLES, N_QUICK = 100_000, 10_000
CLIP = (1, 1024)
BATCH = 64  # samples per padded batch (naive, count bucketing, tf.data)
PACK_LENGTH = 1024  # entries per packed row
PACK_ROWS = 64  # packing: each batch holds about this many rows' worth of samples (Grain's bins below)
MAX_TOKENS = 8192  # the token budget of the budget-bucketing contenders (padding counts)
STATIC_BUCKETS = 16  # buckets of the static-shapes contender: at most 2 batch shapes each for a compiler
TF_BOUNDARIES = [8, 16, 32, 64, 128, 256, 512]
GRAIN_BINS = PACK_ROWS
VOCAB = 32_000
VENV_TF = BENCH_DIR / ".venv-tf"
VENV_GRAIN = BENCH_DIR / ".venv-grain"
SUBPROCESS_TIMEOUT = 1800
REFERENCE = "naive: shuffled, padded to the longest"
PLOT = BENCH_DIR.parent / "docs" / "_static" / "bench_sequences_efficiency.png"


# -- length distributions -------------------------------------------------------------------------


def stdlib_paragraph_lengths(n: int, seed: int = SEED) -> tuple[np.ndarray, str]:
    """Return ``n`` whitespace-token counts of stdlib paragraphs (clipped) and a note on how they were drawn."""
    root = Path(sysconfig.get_paths()["stdlib"])
    counts = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                text = (Path(dirpath) / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            counts.extend(k for k in (len(p.split()) for p in re.split(r"\n[ \t]*\n", text)) if k)
    pool = np.clip(np.array(counts, dtype=np.int64), *CLIP)
    rng = np.random.default_rng(seed)
    replace = len(pool) < n
    lengths = rng.choice(pool, size=n, replace=replace)
    how = "drawn with replacement" if replace else "a random subset"
    return lengths, f"{len(pool)} paragraphs of the Python {sys.version_info[0]}.{sys.version_info[1]} stdlib, {how}"


def lognormal_lengths(n: int, seed: int = SEED) -> tuple[np.ndarray, str]:
    """Return ``n`` lognormal lengths, median 60, sigma 0.8, rounded and clipped."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(60), 0.8, n)), *CLIP).astype(np.int64)
    return lengths, "lognormal, median 60, sigma 0.8"


def make_tokens(lengths: np.ndarray, seed: int = SEED) -> np.ndarray:
    """The flat int32 token ids of all samples (the same in every interpreter for the same lengths)."""
    return np.random.default_rng(seed + 1).integers(1, VOCAB, int(lengths.sum()), dtype=np.int32)


# -- batchup contenders ---------------------------------------------------------------------------------
# Each maker takes the RaggedArray and returns (run, note): run() iterates one shuffled epoch and returns
# (batches, tokens in the batches incl. padding). Configuration a training script builds once (a
# BucketSampler, which chooses its buckets) is built here, outside the timed region, and its cost is noted.


def _padded_epoch(ds: Any, batch_size: Any) -> tuple[int, int]:
    batches = padded = 0
    for batch in ds.batch_iterator(batch_size, shuffle=SEED):
        batches += 1
        padded += batch[0].size
    return batches, padded


def make_naive(ra: Any) -> tuple[Callable[[], tuple[int, int]], str]:
    from batchup.sequences import PadBatch
    from batchup.sources import ArrayDataSource

    ds = ArrayDataSource([ra]).map(PadBatch())
    return (lambda: _padded_epoch(ds, BATCH)), f"ArrayDataSource([ra]).map(PadBatch()), {BATCH} samples per batch"


def pack_batch_size(ra: Any) -> int:
    """Samples per packing batch: about PACK_ROWS rows of PACK_LENGTH at the mean length."""
    return max(1, round(PACK_ROWS * PACK_LENGTH * len(ra) / max(1, ra.values.shape[0])))


def make_packing(ra: Any) -> tuple[Callable[[], tuple[int, int]], str]:
    from batchup.sequences import PackSequences
    from batchup.sources import ArrayDataSource

    ds = ArrayDataSource([ra]).map(PackSequences(PACK_LENGTH))
    bs = pack_batch_size(ra)
    note = f"map(PackSequences({PACK_LENGTH})), first-fit decreasing over batches of {bs} samples (~{PACK_ROWS} rows)"
    return (lambda: _padded_epoch(ds, bs)), note


def _bucketing(ra: Any, pad: str, **sampler_kwargs: Any) -> tuple[Callable[[], tuple[int, int]], str]:
    # The API of the issue: the sampler sets the batch size, batch_iterator(batch_size=None, shuffle=seed).
    from batchup.sequences import BucketSampler, PadBatch, PadToBucket
    from batchup.sources import ArrayDataSource

    t0 = time.perf_counter()
    sampler = BucketSampler(ra.lengths, **sampler_kwargs)
    built = time.perf_counter() - t0
    check_once_per_epoch(sampler)
    padder = PadToBucket(sampler) if pad == "bucket" else PadBatch()
    ds = ArrayDataSource([ra], sampler=sampler).map(padder)
    args = ", ".join(f"{k}={v}" for k, v in sampler_kwargs.items())
    shapes = len(sampler.batch_shapes())
    note = (f"BucketSampler(lengths, {args}) + {type(padder).__name__}(); {len(sampler.bucket_sizes)} buckets, "
            f"{shapes} batch shapes; every sample once per shuffled epoch (checked); sampler built once in "
            f"{built:.2f} s (not timed)")
    return (lambda: _padded_epoch(ds, None)), note


def check_once_per_epoch(sampler: Any) -> None:
    """Fail loudly unless two shuffled epochs hold every sample exactly once, in different orders."""
    epochs = [list(sampler.plan(None, shuffle=SEED, epoch=e).iterator()) for e in (0, 1)]
    for batches in epochs:
        got = np.sort(np.concatenate(batches))
        if not np.array_equal(got, np.arange(sampler.length)):
            raise SystemExit("BucketSampler: an epoch does not hold every sample exactly once")
    if all(np.array_equal(a, b) for a, b in zip(*epochs)):
        raise SystemExit("BucketSampler: two epochs gave the same batches")


def make_count_bucketing(ra: Any) -> tuple[Callable[[], tuple[int, int]], str]:
    return _bucketing(ra, "longest", batch_size=BATCH)


def make_budget_bucketing(ra: Any) -> tuple[Callable[[], tuple[int, int]], str]:
    return _bucketing(ra, "longest", max_tokens=MAX_TOKENS)


def make_static_bucketing(ra: Any) -> tuple[Callable[[], tuple[int, int]], str]:
    return _bucketing(ra, "bucket", max_tokens=MAX_TOKENS, num_buckets=STATIC_BUCKETS)


BATCHUP_CONTENDERS: list[tuple[str, Callable[[Any], tuple[Callable[[], tuple[int, int]], str]]]] = [
    (REFERENCE, make_naive),
    ("batchup packing", make_packing),
    ("batchup count bucketing", make_count_bucketing),
    ("batchup token-budget bucketing", make_budget_bucketing),
    ("batchup token-budget bucketing, static shapes", make_static_bucketing),
]


def _record(name: str, seconds: float | None, note: str, batches: int = 0, padded: int = 0, real: int = 0) -> dict:
    if seconds is None:
        return contender(name, None, note, efficiency=None, batches_per_s=None, tokens_per_s=None)
    return contender(
        name, seconds, note, efficiency=real / padded if padded else None, batches=batches,
        batches_per_s=batches / seconds, tokens_per_s=real / seconds,
    )


def bench_batchup(ra: Any, repeats: int) -> list:
    real = int(ra.values.shape[0])
    out = []
    for name, make in BATCHUP_CONTENDERS:
        run, note = make(ra)
        seconds, _, (batches, padded) = median_of(run, repeats)
        out.append(_record(name, seconds, note, batches, padded, real))
    return out


# -- tf.data (in its own interpreter unless TensorFlow imports here) ------------------------------------


def tf_worker(lengths: np.ndarray, repeats: int, warmup: int = 1) -> dict:
    """Time ``bucket_by_sequence_length`` over a shuffled epoch of the same samples."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tokens = make_tokens(lengths)
    ragged = tf.RaggedTensor.from_row_lengths(tokens, lengths)
    sizes = [BATCH] * (len(TF_BOUNDARIES) + 1)

    def epoch() -> tuple[int, int]:
        ds = tf.data.Dataset.from_tensor_slices(ragged).shuffle(len(lengths), seed=SEED)
        # Slices of a RaggedTensor are ragged elements, which bucket_by_sequence_length (padded_batch)
        # refuses; as dense 1-D tensors they are what it expects.
        ds = ds.map(lambda x: x.to_tensor() if isinstance(x, tf.RaggedTensor) else x)
        ds = ds.bucket_by_sequence_length(lambda x: tf.shape(x)[0], TF_BOUNDARIES, sizes)
        batches = padded = 0
        for x in ds:
            batches += 1
            padded += int(tf.size(x))
        return batches, padded

    seconds, _, (batches, padded) = median_of(epoch, repeats, warmup)
    return {"seconds": seconds, "batches": batches, "padded": padded, "version": tf.__version__}


def bench_tf(lengths_file: Path, lengths: np.ndarray, repeats: int, tf_python: str | None, quick: bool) -> dict:
    name = "tf.data bucket_by_sequence_length"
    note = f"shuffle(n) + bucket_by_sequence_length(boundaries {TF_BOUNDARIES}, {BATCH} per batch)"
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        python = tf_python or (str(VENV_TF / "bin" / "python") if (VENV_TF / "bin" / "python").exists() else None)
        if python is None:
            return _record(name, None, f"TensorFlow is not installed here; pass --tf-python or create {VENV_TF.name}")
        res = run_json_subprocess(
            [python, __file__, "--tf-worker", str(lengths_file), "--repeats", str(repeats)] + ["--quick"] * quick,
            SUBPROCESS_TIMEOUT)
    else:
        res = tf_worker(lengths, repeats, warmup=0 if quick else 1)
    if "error" in res:
        return _record(name, None, res["error"])
    return _record(name, res["seconds"], f"{note}; TF {res['version']}", res["batches"], res["padded"], int(lengths.sum()))


# -- Grain (in a venv of its own) -----------------------------------------------------------------------


def grain_worker(lengths: np.ndarray, repeats: int, warmup: int = 1) -> dict:
    """Time Grain's first-fit packing over a shuffled epoch of the same samples."""
    import grain
    import grain.experimental as gex

    tokens = make_tokens(lengths)
    samples = [{"tokens": t} for t in np.split(tokens, np.cumsum(lengths)[:-1])]

    def epoch() -> tuple[int, int]:
        # num_threads=0 reads in the calling thread: the fastest setting for in-memory samples
        # (the default of 16 reader threads was several times slower on a 2-core machine).
        ds = grain.MapDataset.source(samples).shuffle(seed=SEED).to_iter_dataset(grain.ReadOptions(num_threads=0))
        packed = gex.FirstFitPackIterDataset(
            ds, length_struct={"tokens": PACK_LENGTH}, num_packing_bins=GRAIN_BINS, seed=SEED)
        rows = real = 0
        for row in packed:
            rows += 1
            real += int(np.count_nonzero(row["tokens_segment_ids"]))
        return rows, real

    seconds, _, (rows, real) = median_of(epoch, repeats, warmup)
    version = getattr(grain, "__version__", "?")
    return {"seconds": seconds, "batches": -(-rows // GRAIN_BINS), "padded": rows * PACK_LENGTH, "real": real,
            "version": version}


def ensure_grain(install: bool) -> tuple[str | None, str]:
    """Return the Python of the Grain venv (creating it if allowed), or ``(None, why)``."""
    python = VENV_GRAIN / "bin" / "python"
    check = [str(python), "-c", "import grain.experimental"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python), ""
    if not install:
        return None, f"{VENV_GRAIN.name} is missing or broken and --no-install was given"
    print(f"creating {VENV_GRAIN.name} with grain ...", flush=True)
    for cmd in ([sys.executable, "-m", "venv", "--clear", str(VENV_GRAIN)],
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "grain"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None, "could not install grain: " + " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
    if subprocess.run(check, capture_output=True).returncode != 0:
        return None, "grain installed but grain.experimental does not import"
    return str(python), ""


def bench_grain(
    lengths_file: Path, lengths: np.ndarray, repeats: int, grain_python: str | None, install: bool, quick: bool
) -> dict:
    name = "Grain FirstFitPackIterDataset"
    python, why = (grain_python, "") if grain_python else ensure_grain(install)
    if python is None:
        return _record(name, None, why)
    res = run_json_subprocess(
        [python, __file__, "--grain-worker", str(lengths_file), "--repeats", str(repeats)] + ["--quick"] * quick,
        SUBPROCESS_TIMEOUT)
    if "error" in res:
        return _record(name, None, res["error"])
    note = (f"length {PACK_LENGTH}, {GRAIN_BINS} packing bins (a batch = {GRAIN_BINS} rows), num_threads=0, tokens counted "
            f"from its segment ids; grain {res['version']}")
    return _record(name, res["seconds"], note, res["batches"], res["padded"], res["real"])


# -- main ---------------------------------------------------------------------------------------------------


def format_sequences_table(workloads: list) -> str:
    lines = []
    for wl in workloads:
        lines.append(f"\n{wl['name']}")
        width = max(len(c["name"]) for c in wl["contenders"])
        lines.append(f"  {'contender':<{width}}  {'seconds':>8}  {'efficiency':>10}  {'batches/s':>10}  {'Mtokens/s':>9}  note")
        for c in wl["contenders"]:
            if c["seconds"] is None:
                lines.append(f"  {c['name']:<{width}}  {'n/a':>8}  {'':>10}  {'':>10}  {'':>9}  {c['note']}")
                continue
            eff = "n/a" if c["efficiency"] is None else f"{c['efficiency']:.3f}"
            lines.append(
                f"  {c['name']:<{width}}  {c['seconds']:8.3f}  {eff:>10}  {c['batches_per_s']:10.0f}  "
                f"{c['tokens_per_s'] / 1e6:9.2f}  {c['note']}"
            )
    return "\n".join(lines)


def plot_efficiency(workloads: list, path: Path) -> None:
    """Draw one panel per workload: padding efficiency against real tokens per second, a point per contender.

    Up and to the right is better; the targets (0.95 for bucketing, 0.98 for packing) are dashed lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(workloads), figsize=(6 * len(workloads), 4.6), squeeze=False)
    for ax, wl in zip(axes[0], workloads):
        for c in wl["contenders"]:
            if c["seconds"] is None or c["efficiency"] is None:
                continue
            mine = c["name"].startswith("batchup") or c["name"] == wl["reference"]
            ax.scatter(c["tokens_per_s"] / 1e6, c["efficiency"], s=40, color="#1f77b4" if mine else "#ff7f0e",
                       marker="o" if mine else "s")
            ax.annotate(c["name"].replace("batchup ", ""), (c["tokens_per_s"] / 1e6, c["efficiency"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=7)
        for target in (0.95, 0.98):
            ax.axhline(target, color="grey", linewidth=0.7, linestyle="--")
        ax.set_ylim(0, 1.08)
        ax.set_xscale("log")  # Python-per-element contenders are orders of magnitude slower
        ax.set_xlabel("real tokens per second (millions, log scale, higher is better)", fontsize=8)
        ax.set_ylabel("padding efficiency (real / padded tokens)", fontsize=8)
        ax.set_title(wl["name"].split(" (")[0], fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_repeats=3, quick_repeats=1)
    parser.add_argument("--tf-python", default=None, help="an interpreter with TensorFlow (and NumPy) installed")
    parser.add_argument("--grain-python", default=None, help="an interpreter with grain installed")
    parser.add_argument("--no-install", action="store_true", help=f"do not create {VENV_GRAIN.name} if it is missing")
    parser.add_argument("--plot", type=Path, default=None,
                        help=f"where to draw efficiency against throughput (default {PLOT.relative_to(BENCH_DIR.parent)} "
                             "for a full run, none for --quick)")
    parser.add_argument("--tf-worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--grain-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = repeats_from(args)
    if args.tf_worker is not None:
        emit_json(tf_worker(np.load(args.tf_worker), repeats, warmup=0 if args.quick else 1))
        return
    if args.grain_worker is not None:
        emit_json(grain_worker(np.load(args.grain_worker), repeats, warmup=0 if args.quick else 1))
        return

    from batchup.sequences import RaggedArray

    n = N_QUICK if args.quick else N_SAMPLES
    workloads = []
    with tempfile.TemporaryDirectory(prefix="bench-sequences-") as tmp:
        for label, make in (("stdlib paragraphs", stdlib_paragraph_lengths), ("lognormal", lognormal_lengths)):
            t0 = time.perf_counter()
            lengths, how = make(n)
            ra = RaggedArray.from_lengths(make_tokens(lengths), lengths)
            lengths_file = Path(tmp) / f"{label.replace(' ', '_')}.npy"
            np.save(lengths_file, lengths)
            print(f"{label}: {n} samples, {int(lengths.sum())} tokens, median {np.median(lengths):.0f}, "
                  f"max {lengths.max()} ({time.perf_counter() - t0:.1f} s to build)", flush=True)
            contenders = bench_batchup(ra, repeats)
            contenders.append(bench_tf(lengths_file, lengths, repeats, args.tf_python, args.quick))
            contenders.append(
                bench_grain(lengths_file, lengths, repeats, args.grain_python, not args.no_install, args.quick))
            workloads.append(workload(
                f"{label}: {n} samples, {int(lengths.sum())} tokens ({how})", REFERENCE, contenders,
                unit="s per epoch", lengths={"median": float(np.median(lengths)), "mean": float(lengths.mean()),
                                             "max": int(lengths.max())}))
    path = write_results(
        "sequences", workloads, args.out, quick=args.quick, repeats=repeats,
        title="Variable-length sequences: padding efficiency and speed",
        description="Real tokens / tokens in the batches (efficiency), batches/s and real tokens/s over one "
                    "shuffled epoch; seconds are per epoch, ratios relative to naive padding.")
    print(format_sequences_table(workloads))
    print(f"\nresults: {path}")
    plot = args.plot if args.plot is not None else (None if args.quick else PLOT)
    if plot is not None:
        try:
            plot_efficiency(workloads, plot)
            print(f"plot: {plot}")
        except ImportError:
            print("plot: matplotlib is not installed (pip install batchup[docs]); no plot drawn")


if __name__ == "__main__":
    main()
