"""Tables: batches from a DataFrame (or dict of columns) with per-column encoders.

:class:`DataFrameSource` reads the columns named in ``x_structure`` and
``y_structure`` and applies pre-fitted encoders (scikit-learn's or your
own) to each batch, yielding batches shaped like the declaration.
"""
from __future__ import annotations

from batchup.tables.encoding import n_classes_of
from batchup.tables.source import DataFrameSource, UnknownColumnError
from batchup.tables.structure import Leaf, parse_structure

__all__ = ["DataFrameSource", "Leaf", "UnknownColumnError", "n_classes_of", "parse_structure"]
