"""Consume a batch stream in the calling thread: gather results, show progress."""
from __future__ import annotations

from batchup.pipeline.batch_map import batch_map_concat, batch_map_mean
from batchup.pipeline.progress import wrap_progress

__all__ = ["batch_map_concat", "batch_map_mean", "wrap_progress"]
