"""``python -m batchup demo``: train the NumPy softmax classifier of :mod:`batchup.demo`."""
from __future__ import annotations

import argparse

from batchup._cli._types import bounded_int, positive_float, positive_int

__all__ = ["add_parser", "run"]

HELP = "train a small classifier on the digits shipped with batchup"
DESCRIPTION = """\
Train a softmax classifier in pure NumPy on the UCI handwritten digits shipped
with batchup (1,797 8x8 images) and print the validation loss and error of
every epoch, the test accuracy and the training speed. It shows the everyday
batchup loop: shuffled batches, a seeded augmentation, and batch_map_mean /
batch_map_concat for evaluation."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command to the subparsers ``sub``."""
    p = sub.add_parser("demo", help=HELP, description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=positive_int, default=20, metavar="N",
                   help="training epochs, at least 1 (default 20)")
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="B",
                   help="samples per training batch, at least 1 (default 64)")
    p.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0, metavar="S",
                   help="seed for the split, shuffling, augmentation and initial weights, "
                        "0 to 2**32-1 (default 0)")
    p.add_argument("--lr", type=positive_float, default=0.5, metavar="RATE",
                   help="learning rate, greater than 0 (default 0.5)")
    p.add_argument("--no-progress", action="store_true",
                   help="draw no progress bars; print one summary line per epoch instead")
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits",
                   help="digits (shipped, the default) or mnist (when cached or downloadable; "
                        "falls back to digits)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed ``args``; return the exit status."""
    from batchup.demo import run_demo  # imported here so that --help stays quick

    run_demo(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
             progress=not args.no_progress, dataset=args.dataset)
    return 0
