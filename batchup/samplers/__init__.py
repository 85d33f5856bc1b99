"""Samplers: which sample indices form each batch, and in what order."""
from __future__ import annotations

from batchup.samplers.balanced import (
    BalancedIndexBatchIterator,
    BalancedSampler,
    OneHotLabels,
    to_categorical,
)
from batchup.samplers.base import AbstractSampler, IndexBatchIterator, ShardedIndexBatchIterator, num_batches
from batchup.samplers.sharding import ShardSpec
from batchup.samplers.standard import StandardSampler
from batchup.samplers.subset import SubsetSampler
from batchup.samplers.weighted import (
    WeightedEpochBatchIterator,
    WeightedIndexBatchIterator,
    WeightedSampler,
    WeightedSubsetSampler,
    class_balancing_weights,
)

__all__ = [
    "AbstractSampler",
    "BalancedIndexBatchIterator",
    "BalancedSampler",
    "IndexBatchIterator",
    "OneHotLabels",
    "ShardSpec",
    "ShardedIndexBatchIterator",
    "StandardSampler",
    "SubsetSampler",
    "WeightedEpochBatchIterator",
    "WeightedIndexBatchIterator",
    "WeightedSampler",
    "WeightedSubsetSampler",
    "class_balancing_weights",
    "num_batches",
    "to_categorical",
]
