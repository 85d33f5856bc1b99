"""batchup: mini-batches for training neural networks, from any framework.

Import the submodules you need, for example ``from batchup import data_source``
(the BatchUp 0.2 compatible API) or ``from batchup.sources import ArrayDataSource``.
:func:`batchup.profile` wraps any batch iterator with a stall report.
Importing ``batchup`` itself loads nothing heavy.
"""
from __future__ import annotations

from batchup.profiling import profile

__version__ = "0.3.0.dev0"

__all__ = ["__version__", "profile"]
