"""BatchUp 0.2 compatible names for data sources and the gather helpers.

This module only re-exports: the classes live in :mod:`batchup.sources` and
the helpers in :mod:`batchup.pipeline`. Code written for BatchUp 0.2.3
(``from batchup import data_source``) runs unchanged.
"""
from __future__ import annotations

from batchup.pipeline.batch_map import batch_map_concat, batch_map_mean
from batchup.sources import (
    AbstractDataSource,
    ArrayDataSource,
    CallableDataSource,
    ChoiceBatch,
    ChoiceDataSource,
    CompositeDataSource,
    IteratorDataSource,
    MapDataSource,
    RandomAccessDataSource,
    coerce_data_source,
)

__all__ = [
    "AbstractDataSource",
    "ArrayDataSource",
    "CallableDataSource",
    "ChoiceBatch",
    "ChoiceDataSource",
    "CompositeDataSource",
    "IteratorDataSource",
    "MapDataSource",
    "RandomAccessDataSource",
    "batch_map_concat",
    "batch_map_mean",
    "coerce_data_source",
]
