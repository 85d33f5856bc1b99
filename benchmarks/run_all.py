"""Run every ``benchmarks/bench_*.py``, each in its own process, then the report step.

Usage::

    python benchmarks/run_all.py            # full runs (several minutes)
    python benchmarks/run_all.py --quick    # small runs, to check that everything works

Each benchmark writes ``benchmarks/results/bench_<name>.json``; ``report.py``
then rebuilds ``docs/_generated/benchmark_tables.rst`` and the charts in
``docs/_static/``. A benchmark that fails does not stop the others; the exit
code is non-zero if any failed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def discover(only: list[str] | None = None) -> list[Path]:
    """Return the benchmark scripts, sorted; ``only`` restricts them by name (``inmemory`` or ``bench_inmemory``)."""
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if only:
        wanted = {n.removeprefix("bench_").removesuffix(".py") for n in only}
        unknown = wanted - {p.stem.removeprefix("bench_") for p in scripts}
        if unknown:
            raise SystemExit(f"--only names unknown benchmarks: {', '.join(sorted(unknown))}")
        scripts = [p for p in scripts if p.stem.removeprefix("bench_") in wanted]
    return scripts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--no-report", action="store_true", help="skip the report step")
    args = parser.parse_args(argv)

    failed = []
    for script in discover(args.only):
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"=== {script.name} {'--quick' if args.quick else ''}".rstrip(), flush=True)
        t0 = time.perf_counter()
        code = subprocess.call(cmd, cwd=BENCH_DIR.parent)
        took = time.perf_counter() - t0
        print(f"=== {script.name}: {'ok' if code == 0 else f'FAILED (exit code {code})'} in {took:.0f} s\n",
              flush=True)
        if code != 0:
            failed.append(script.name)
    if not args.no_report:
        code = subprocess.call([sys.executable, str(BENCH_DIR / "report.py")], cwd=BENCH_DIR.parent)
        if code != 0:
            failed.append("report.py")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
