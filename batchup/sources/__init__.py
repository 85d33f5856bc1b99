"""Data sources: what a batch contains, paired with a sampler for the order."""
from __future__ import annotations

from batchup.sources.array import ArrayBatchIterator, ArrayDataSource
from batchup.sources.base import AbstractDataSource, RandomAccessBatchIterator, RandomAccessDataSource
from batchup.sources.callable import CallableBatchIterator, CallableDataSource
from batchup.sources.choice import ChoiceBatch, ChoiceBatchIterator, ChoiceDataSource
from batchup.sources.coerce import coerce_data_source
from batchup.sources.composite import CompositeBatchIterator, CompositeDataSource
from batchup.sources.iterator import IteratorDataSource
from batchup.sources.mapped import MapBatchIterator, MapDataSource

__all__ = [
    "AbstractDataSource",
    "ArrayBatchIterator",
    "ArrayDataSource",
    "CallableBatchIterator",
    "CallableDataSource",
    "ChoiceBatch",
    "ChoiceBatchIterator",
    "ChoiceDataSource",
    "CompositeBatchIterator",
    "CompositeDataSource",
    "IteratorDataSource",
    "MapBatchIterator",
    "MapDataSource",
    "RandomAccessBatchIterator",
    "RandomAccessDataSource",
    "coerce_data_source",
]
