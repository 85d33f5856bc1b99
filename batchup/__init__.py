"""batchup: mini-batches for training neural networks, from any framework.

Import the submodules you need, for example ``from batchup import data_source``
(the BatchUp 0.2 compatible API) or ``from batchup.sources import ArrayDataSource``.
Importing ``batchup`` itself loads nothing heavy.
"""
from __future__ import annotations

__version__ = "0.3.0.dev0"

__all__ = ["__version__"]
