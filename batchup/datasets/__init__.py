"""Standard datasets, fetched on first use and cached as memory-mapped NumPy files.

Import the dataset module you need, e.g. ``from batchup.datasets import mnist``.
Importing a module does nothing else: no directory is created and nothing is
downloaded until a dataset class or fetch function is called.
"""
from __future__ import annotations

__all__: list[str] = []
