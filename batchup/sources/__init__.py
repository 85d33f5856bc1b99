"""Data sources: what a batch contains, paired with a sampler for the order."""
from __future__ import annotations

from batchup.sources.array import ArrayBatchIterator, ArrayDataSource
from batchup.sources.base import (
    AbstractDataSource,
    BatchIterator,
    RandomAccessBatchIterator,
    RandomAccessDataSource,
)
from batchup.sources.callable import CallableBatchIterator, CallableDataSource
from batchup.sources.choice import ChoiceBatch, ChoiceBatchIterator, ChoiceDataSource, ChoicePlan
from batchup.sources.coerce import coerce_data_source
from batchup.sources.composite import CompositeBatchIterator, CompositeDataSource, ZipPlan
from batchup.sources.iterator import IteratorDataSource
from batchup.sources.mapped import MapBatchIterator, MapDataSource
from batchup.sources.mixture import MixtureDataSource, MixtureIndices, MixturePlan

__all__ = [
    "AbstractDataSource",
    "ArrayBatchIterator",
    "ArrayDataSource",
    "BatchIterator",
    "CallableBatchIterator",
    "CallableDataSource",
    "ChoiceBatch",
    "ChoiceBatchIterator",
    "ChoiceDataSource",
    "ChoicePlan",
    "CompositeBatchIterator",
    "CompositeDataSource",
    "IteratorDataSource",
    "MapBatchIterator",
    "MapDataSource",
    "MixtureDataSource",
    "MixtureIndices",
    "MixturePlan",
    "RandomAccessBatchIterator",
    "RandomAccessDataSource",
    "ZipPlan",
    "coerce_data_source",
]
