"""Command line: ``python -m batchup demo [--dataset digits|mnist] [--epochs N] [--batch-size B] [--seed S]``."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the batchup command line and return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m batchup", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small classifier on data shipped with batchup")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    demo.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64)")
    demo.add_argument("--seed", type=int, default=0, help="seed for shuffling and initialisation")
    demo.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    demo.add_argument("--dataset", choices=["digits", "mnist"], default="digits",
                      help="digits (shipped, the default) or mnist (when cached or downloadable; "
                           "falls back to digits)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from batchup.demo import run_demo

        run_demo(
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            lr=args.lr,
            progress=not args.no_progress,
            dataset=args.dataset,
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
