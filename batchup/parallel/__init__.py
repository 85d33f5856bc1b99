"""Worker pools and parallel prefetching: the only layer that runs threads or processes.

* :class:`WorkerThreadPool`, :class:`WorkerProcessPool` and the serial twin
  :class:`InlinePool` run tasks; :class:`JoblibWorkerPool` runs them on
  whatever joblib backend is active (Dask included).
* :class:`WorkStream` keeps a bounded number of tasks in flight and returns
  results in order.
* :class:`ParallelDataSource` prepares a data source's batches in a pool;
  ``ds.prefetch(num_workers=2)`` is the front door, and
  ``ds.prefetch(num_workers="auto")`` (:class:`AutoParallelDataSource`)
  chooses the pool by measuring.
"""
from __future__ import annotations

from batchup.parallel.autotune import AutoParallelDataSource, Choice
from batchup.parallel.errors import (
    BatchTimeoutError,
    PoolClosedError,
    RemoteTraceback,
    StagingSpaceError,
    WorkerCrashedError,
    WorkerError,
)
from batchup.parallel.joblib_pool import JoblibWorkerPool
from batchup.parallel.pool import AbstractWorkerPool, InlinePool, SharedConstant, WorkerThreadPool
from batchup.parallel.prefetch import ParallelBatchIterator, ParallelDataSource, prefetch
from batchup.parallel.process_pool import WorkerProcessPool
from batchup.parallel.work_stream import WorkStream

__all__ = [
    "AbstractWorkerPool",
    "AutoParallelDataSource",
    "BatchTimeoutError",
    "Choice",
    "InlinePool",
    "JoblibWorkerPool",
    "ParallelBatchIterator",
    "ParallelDataSource",
    "PoolClosedError",
    "RemoteTraceback",
    "SharedConstant",
    "StagingSpaceError",
    "WorkStream",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerProcessPool",
    "WorkerThreadPool",
    "prefetch",
]
