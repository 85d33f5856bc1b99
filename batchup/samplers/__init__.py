"""Samplers: which sample indices form each batch, and in what order, as batch plans."""
from __future__ import annotations

from batchup.samplers.balanced import BalancedSampler, OneHotLabels, to_categorical
from batchup.samplers.base import AbstractSampler, PlannedSampler, num_batches
from batchup.samplers.bucket import BucketSampler
from batchup.samplers.bucket_plan import BucketPlan
from batchup.samplers.flat import FlatPlan
from batchup.samplers.plan import BatchPlan, IndexBatchIterator, PlanOptions
from batchup.samplers.sequential import IteratorPlan
from batchup.samplers.sharding import ShardSpec
from batchup.samplers.standard import StandardSampler
from batchup.samplers.stream import StreamPlan
from batchup.samplers.subset import SubsetSampler
from batchup.samplers.weighted import WeightedSampler, WeightedSubsetSampler, class_balancing_weights

__all__ = [
    "AbstractSampler",
    "BalancedSampler",
    "BatchPlan",
    "BucketPlan",
    "BucketSampler",
    "FlatPlan",
    "IndexBatchIterator",
    "IteratorPlan",
    "OneHotLabels",
    "PlanOptions",
    "PlannedSampler",
    "ShardSpec",
    "StandardSampler",
    "StreamPlan",
    "SubsetSampler",
    "WeightedSampler",
    "WeightedSubsetSampler",
    "class_balancing_weights",
    "num_batches",
    "to_categorical",
]
