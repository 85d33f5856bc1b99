"""BatchUp 0.2 compatible names for samplers (re-exported from :mod:`batchup.samplers`)."""
from __future__ import annotations

from batchup.samplers import (
    AbstractSampler,
    StandardSampler,
    SubsetSampler,
    WeightedSampler,
    WeightedSubsetSampler,
    num_batches,
)

__all__ = [
    "AbstractSampler",
    "StandardSampler",
    "SubsetSampler",
    "WeightedSampler",
    "WeightedSubsetSampler",
    "num_batches",
]
