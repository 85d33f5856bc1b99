"""BatchUp 0.2 compatible names for the worker pools.

This module only re-exports from :mod:`batchup.parallel`; code written for
BatchUp 0.2.3 (``from batchup import work_pool``) runs unchanged.
"""
from __future__ import annotations

from batchup.parallel import (
    AbstractWorkerPool,
    BatchTimeoutError,
    JoblibWorkerPool,
    ParallelDataSource,
    PoolClosedError,
    WorkerCrashedError,
    WorkerError,
    WorkerProcessPool,
    WorkerThreadPool,
    WorkStream,
)

__all__ = [
    "AbstractWorkerPool",
    "BatchTimeoutError",
    "JoblibWorkerPool",
    "ParallelDataSource",
    "PoolClosedError",
    "WorkStream",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerProcessPool",
    "WorkerThreadPool",
]
