"""Shared helpers for the benchmark scripts: timing, machine description, JSON results.

Every ``benchmarks/bench_<x>.py`` writes ``benchmarks/results/bench_<x>.json``::

    {"benchmark": "<x>", "machine": "<short uname/cpu string>",
     "workloads": [{"name": "...", "unit": "s", "reference": "<contender name>",
                    "contenders": [{"name": "...", "seconds": 1.23, "ratio": 1.0, "note": "..."}]}]}

A contender that could not run has ``"seconds": null`` (and ``"ratio": null``) and
a note saying why. Extra keys are allowed anywhere; ``report.py`` ignores them.

Using this module is optional: a benchmark script only has to write that JSON.
It depends on the standard library and NumPy only, so worker scripts that run
in other virtual environments can import it too.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def add_common_args(parser: argparse.ArgumentParser, default_repeats: int = 5, quick_repeats: int = 2) -> None:
    """Add ``--quick``, ``--repeats`` and ``--out`` to a benchmark's argument parser."""
    parser.add_argument("--quick", action="store_true", help="a small, fast run (smaller data, fewer repetitions)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed repetitions per contender, the median reported (default {default_repeats}, {quick_repeats} with --quick)",
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON results")
    parser.set_defaults(_default_repeats=default_repeats, _quick_repeats=quick_repeats)


def repeats_from(args: argparse.Namespace) -> int:
    """Return the number of timed repetitions selected by ``args``."""
    if args.repeats is not None:
        if args.repeats < 1:
            raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
        return args.repeats
    return args._quick_repeats if args.quick else args._default_repeats


def machine_string() -> str:
    """Return a short description of this machine: OS, CPU model, cores, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    mem = ""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages * page_size / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {cores} cores{mem}, Python {platform.python_version()}"


def median_of(run: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float], Any]:
    """Call ``run`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns ``(median_seconds, all_timed_seconds, last_return_value)``. A full
    garbage collection runs before every call, outside the timed region. The
    median, not the minimum, is reported: on a shared, noisy machine it is
    the typical run, and ratios of medians from one run compare fairly.
    """
    result = None
    for _ in range(warmup):
        gc.collect()
        result = run()
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times)), times, result



def contender(name: str, seconds: float | None, note: str = "", **extra: Any) -> dict:
    """Return one contender record; ``seconds=None`` marks a contender that could not run."""
    rec = {"name": name, "seconds": None if seconds is None else float(seconds), "ratio": None, "note": note}
    rec.update(extra)
    return rec


def workload(name: str, reference: str, contenders: Sequence[dict], unit: str = "s", **extra: Any) -> dict:
    """Return a workload record with every contender's ratio to ``reference`` filled in."""
    ref = next((c for c in contenders if c["name"] == reference), None)
    if ref is None:
        raise ValueError(f"reference {reference!r} is not among the contenders of workload {name!r}")
    base = ref["seconds"]
    for c in contenders:
        ok = base not in (None, 0) and c["seconds"] is not None
        c["ratio"] = c["seconds"] / base if ok else None
    rec = {"name": name, "unit": unit, "reference": reference, "contenders": list(contenders)}
    rec.update(extra)
    return rec


def write_results(benchmark: str, workloads: Sequence[dict], out: Path | None = None, **extra: Any) -> Path:
    """Write the results JSON (atomically) and return its path."""
    out = Path(out) if out is not None else RESULTS_DIR / f"bench_{benchmark}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": benchmark, "machine": machine_string(), "workloads": list(workloads), "statistic": "median"}
    doc.update(extra)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def format_table(doc: dict) -> str:
    """Return the results as a plain-text table, one block per workload."""
    lines = [f"benchmark: {doc['benchmark']}    machine: {doc['machine']}"]
    for wl in doc["workloads"]:
        lines.append("")
        lines.append(f"{wl['name']}  (ratio = seconds / {wl['reference']})")
        width = max([len(c["name"]) for c in wl["contenders"]] + [9])
        lines.append(f"  {'contender':<{width}}  {'seconds':>9}  {'ratio':>7}  note")
        for c in wl["contenders"]:
            secs = "n/a" if c["seconds"] is None else f"{c['seconds']:.4f}"
            ratio = "n/a" if c["ratio"] is None else f"{c['ratio']:.2f}x"
            lines.append(f"  {c['name']:<{width}}  {secs:>9}  {ratio:>7}  {c.get('note', '')}")
    return "\n".join(lines)


def run_json_subprocess(cmd: Sequence[str], timeout: float, env: dict | None = None) -> dict:
    """Run ``cmd`` and parse the last line of its stdout as JSON.

    Returns the parsed dict, or ``{"error": "<why>"}`` if the process failed,
    timed out or printed no JSON.
    """
    full_env = dict(os.environ)
    full_env.pop("PYTHONPATH", None)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    except OSError as err:
        return {"error": f"could not start {cmd[0]}: {err}"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": f"no JSON on the last line of output: {lines[-1][:200]!r}"}


def emit_json(doc: dict) -> None:
    """Print ``doc`` as one JSON line on stdout (the worker side of :func:`run_json_subprocess`)."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
