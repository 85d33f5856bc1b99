"""The ``python -m batchup`` command line: ``demo``, ``info`` and ``fetch``, one module each.

:func:`main` builds the parser and runs the chosen command. Each command
module has ``add_parser(subparsers)``, which registers the command and its
options, and ``run(args) -> int``; options are checked by argparse, so a bad
value ends with a usage message and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
from typing import Sequence

__all__ = ["build_parser", "main"]

DESCRIPTION = "batchup feeds training data to neural networks in mini-batches."
EPILOG = """\
examples:
  python -m batchup demo --epochs 5
  python -m batchup info
  python -m batchup fetch mnist cifar10

'python -m batchup COMMAND --help' shows the options of a command."""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m batchup``."""
    from batchup import __version__
    from batchup._cli import demo, fetch, info

    parser = argparse.ArgumentParser(prog="python -m batchup", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"batchup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, title="commands")
    for module in (demo, info, fetch):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the batchup command line with ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    Examples
    --------
    >>> main(["demo", "--epochs", "0"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    args = build_parser().parse_args(argv)
    return int(args.run(args))
