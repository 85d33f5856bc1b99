"""Argument types for the command line: each rejects a bad value with a message argparse prints (exit 2)."""
from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["bounded_int", "positive_float", "positive_int"]


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """Return an argparse ``type`` accepting ints in ``[low, high]`` (no upper bound when ``high`` is None).

    Examples
    --------
    >>> seed = bounded_int(0, 2**32 - 1)
    >>> seed("7")
    7
    >>> seed("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an int from 0 to 4294967295, got '-1'
    """
    expected = f"an int from {low} to {high}" if high is not None else f"an int of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    parse.__name__ = "int"  # argparse names the type in some messages
    return parse


#: An int of at least 1 (epochs, batch sizes).
positive_int = bounded_int(1)


def positive_float(text: str) -> float:
    """Parse a finite float greater than 0.

    Examples
    --------
    >>> positive_float("0.5")
    0.5
    >>> positive_float("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a finite number greater than 0, got 'nan'
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, got {text!r}")
    return value
