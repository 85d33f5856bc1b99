"""``num_workers="auto"``: choose the pool, its size and the buffer by measuring.

``ds.prefetch(num_workers="auto")`` returns an :class:`AutoParallelDataSource`.
Its first iterator calibrates on the first batches of its own stream and
hands each of them out as soon as it is made, so the iterator yields exactly
the serial batches, in order, and the consumer works on them while the
measurement goes on:

1. **The calling thread**: batches are made inline (at least
   :data:`INLINE_MIN_BATCHES` and :data:`PHASE_SECONDS` of work, at most
   :data:`INLINE_MAX_BATCHES`), giving the time per batch, the share of it
   spent on the CPU and the size of a batch (the median, leaving the first
   batch out when there are three or more; the quicker of two). A batch that
   takes less than :data:`MIN_PARALLEL_SECONDS` stays inline, decided as
   soon as the first batches show it: handing it to a worker costs about as
   much.
2. **Threads** (unless ``kind="process"``): :data:`ROUNDS` to
   :data:`MAX_ROUNDS` batches per thread (enough for about
   :data:`POOL_SECONDS` if the threads scaled perfectly), all submitted at
   once; one thread per CPU, or more when the calling thread spent most of a
   batch off the CPU (waiting for files or the network). Whether the work
   releases the GIL shows here. The rate is taken from the times the workers
   finished their batches (the median time of a round, from any finish to
   the one a round later), so neither starting the pool, nor the consumer's
   pace, nor one batch slowed by another job counts.
3. **Processes** (unless ``kind="thread"``), one per CPU, measured alike, if
   threads did not already scale with the CPUs, the source pickles (so the
   choice does not rest on ``fork``) and this is not itself a worker process.
4. The fastest wins if it makes batches at least :data:`GAIN` times as fast
   as the calling thread (else inline: never slower than serial); threads
   win over processes when at least :data:`THREADS_OVER_PROCESSES` as fast.
   The buffer is ``max(4, 2 * workers)`` batches, fewer if that many do not
   fit the memory budget; a pool whose measurement would put more batches in
   flight than the budget holds is not tried.

The choice (:class:`Choice`, also in the stall report) is kept for every
later iterator of the source. A run too short to calibrate is made inline
and leaves the choice to the next iterator; so does a run whose batch fails
while calibrating (the error reaches the consumer at that batch, and the
run ends). Only the loader is measured, not the consumer: a consumer that
needs the CPUs itself may do better with fewer workers.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from batchup._checks import is_int
from batchup.parallel.errors import PoolClosedError
from batchup.parallel.pool import check_timeout
from batchup.parallel.prefetch import ParallelDataSource, check_source
from batchup.parallel.work_stream import check_buffer_size
from batchup.samplers.plan import plan_options
from batchup.sources.base import BatchIterator

__all__ = ["AutoParallelDataSource", "Choice", "InlineBatchIterator", "default_memory_budget"]

#: Batches made in the calling thread first: at least this many ...
INLINE_MIN_BATCHES = 2
#: ... and for at least this many seconds (also the length aimed at for each pool) ...
#: (Long enough that one slow moment of a shared machine does not decide alone; a few
#: dozen batches of a typical augmentation.)
PHASE_SECONDS = 0.08
#: ... but no more than this many.
INLINE_MAX_BATCHES = 16
#: Batches per worker when a pool is measured: at least this many ...
ROUNDS = 3
#: ... more, up to :data:`MAX_ROUNDS`, if the pool would make them in less than this many seconds ...
POOL_SECONDS = 0.08
#: ... but no more than this many.
MAX_ROUNDS = 16
#: A batch quicker than this in the calling thread is not worth a worker (a task costs ~0.1-1 ms).
MIN_PARALLEL_SECONDS = 1e-3
#: A pool is chosen only if it makes batches at least this many times as fast as the calling thread.
#: (A pool's first batches run on freshly started workers, so the calibration tends to rate it below
#: its steady pace: at 1.10, two process workers that later ran 1.6x as fast as the calling thread
#: were measured at 1.07-1.08x and left out in 2 of 10 calibrations of ``benchmarks/bench_autotune.py``.)
GAIN = 1.05
#: Threads are chosen over processes when they make batches at least this fraction as fast.
THREADS_OVER_PROCESSES = 0.90
#: Threads that reach this share of linear scaling make a process pool pointless to try.
LINEAR = 0.85
#: Below this share of a batch's time on the CPU, the work mostly waits: more threads than CPUs help.
WAITING_CPU_SHARE = 0.5
#: The most threads tried for work that waits (and at most 4 per CPU).
MAX_WAITING_THREADS = 16
#: The default memory budget: this share of the memory available, within the bounds below.
BUDGET_SHARE = 0.10
BUDGET_MIN = 64 * 2**20
BUDGET_MAX = 2 * 2**30


@dataclasses.dataclass(frozen=True)
class Choice:
    """What ``num_workers="auto"`` chose, and why (``par.choice``; also in the stall report).

    Made by the calibration, not by users; each parameter is kept as the
    attribute of the same name.

    Parameters
    ----------
    kind : {'inline', 'thread', 'process'}
        Where batches are made ('inline': in the calling thread).
    num_workers : int
        Workers of the pool (0 inline).
    buffer_size : int
        Batches prepared ahead.
    reason : str
        The measurements and the rule that decided.
    rates : dict
        Batches per second measured, per setting tried.
    batch_bytes : int
        Bytes of the largest calibration batch (its arrays).
    memory_budget : int
        Bytes the batches in flight may take.
    budget_source : str
        Where the budget came from.
    seconds : float
        Time from the calibration's first batch to the choice (the
        consumer's time between those batches included).
    batches : int
        Batches made while calibrating (the iteration's first batches).
    """

    kind: str
    num_workers: int
    buffer_size: int
    reason: str
    rates: dict
    batch_bytes: int
    memory_budget: int
    budget_source: str
    seconds: float
    batches: int

    def as_dict(self) -> dict:
        """Return the choice as a JSON-serialisable dict.

        Returns
        -------
        dict
            One key per parameter of the class.
        """
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        where = "the calling thread" if self.kind == "inline" else f"{self.num_workers} {self.kind} workers"
        return f"{where}, buffer {self.buffer_size}: {self.reason}"


def default_memory_budget() -> tuple:
    """Return the default memory budget of ``num_workers="auto"``.

    Ten per cent of the memory available now, within 64 MiB .. 2 GiB
    (512 MiB where the available memory cannot be read).

    Returns
    -------
    budget : int
        Bytes the batches in flight may take.
    source : str
        Where the figure comes from, as the stall report shows it.
    """
    avail = _available_memory()
    if avail is None:
        return 512 * 2**20, "512 MiB (the memory available on this machine is unknown)"
    budget = int(min(BUDGET_MAX, max(BUDGET_MIN, avail * BUDGET_SHARE)))
    return budget, (f"{BUDGET_SHARE:.0%} of the {_size(avail)} of memory available when calibrating "
                    f"(at least {_size(BUDGET_MIN)}, at most {_size(BUDGET_MAX)})")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


class AutoParallelDataSource(ParallelDataSource):
    """A :class:`~batchup.parallel.ParallelDataSource` whose pool is chosen by measuring.

    Made by ``ds.prefetch(num_workers="auto")``; see the module
    documentation for the calibration. Until the first iterator's first
    batch, :attr:`pool` and :attr:`choice` are ``None``.

    Parameters
    ----------
    ds : AbstractDataSource
        A random-access source.
    kind : {'thread', 'process'}, optional
        Keyword-only: try only this kind of pool (and the calling thread).
    buffer_size : int, optional
        Keyword-only: batches prepared ahead, instead of choosing.
    memory_budget : int, optional
        Keyword-only: bytes the batches prepared ahead (and those kept from
        the calibration) may take; default :func:`default_memory_budget`.
    start_method : str, optional
        Keyword-only: for a process pool.
    timeout : float, optional
        Keyword-only: seconds to wait for one batch.
    """

    def __init__(self, ds: Any, *, kind: str | None = None, buffer_size: int | None = None,
                 memory_budget: int | None = None, start_method: str | None = None, timeout: Any = None) -> None:
        check_source(ds)
        if buffer_size is not None and memory_budget is not None:
            raise ValueError(
                f"pass buffer_size or memory_budget, not both (got buffer_size={buffer_size!r}, "
                f"memory_budget={memory_budget!r})"
            )
        self.ds: Any = ds
        self.timeout = check_timeout(timeout)
        self.kinds = ("thread", "process") if kind is None else (kind,)
        self.start_method = start_method
        self.memory_budget = None if memory_budget is None else _check_budget(memory_budget)
        self._fixed_buffer = None if buffer_size is None else check_buffer_size(buffer_size, "buffer_size")
        self.batch_buffer_size: Any = self._fixed_buffer
        self.pool: Any = None
        self.shared_ds: Any = None
        self.choice: Choice | None = None
        self._owns_pool = True
        self._closed = False

    def batch_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> Any:
        """Return an iterator over the batches of ``ds.batch_iterator(batch_size, shuffle, **kwargs)``.

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        shuffle : bool, int, numpy.random.Generator or None, optional
            As for the wrapped source's ``batch_iterator``.
        **kwargs
            The wrapped source's other iteration options (``epoch``,
            ``shard``, ...); an unknown keyword is a ``TypeError``.

        Returns
        -------
        InlineBatchIterator or ParallelBatchIterator
            Once the calling thread was chosen, an :class:`InlineBatchIterator`
            (the serial iterator); otherwise a
            :class:`~batchup.parallel.ParallelBatchIterator`, which calibrates
            at its first batch if nothing was chosen yet.
        """
        if self._closed:
            raise PoolClosedError("this prefetching source is closed; call prefetch() again")
        if self.choice is not None and self.choice.kind == "inline":
            plan = self.ds._plan(batch_size, plan_options("ParallelDataSource.batch_iterator", kwargs, shuffle))
            return InlineBatchIterator(self.ds, plan, self)
        return super().batch_iterator(batch_size, shuffle, **kwargs)

    def close(self) -> None:
        """Close the chosen pool (idempotent)."""
        self._closed = True
        if self.pool is not None:
            self.pool.close()

    def _calibration(self, it: Any) -> Any:
        # Imported here: the calibration builds on this module's Choice and budget.
        from batchup.parallel._calibration import Calibration

        return Calibration(it)


def _check_budget(value: Any) -> int:
    if not is_int(value):
        raise TypeError(f"memory_budget must be an int number of bytes, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {value!r}")
    return int(value)


class InlineBatchIterator(BatchIterator):
    """The serial iterator, for a source whose ``num_workers="auto"`` chose the calling thread.

    It has the prefetching iterator's ``close()`` and context manager (both
    do nothing), and its stall report shows the choice.

    Parameters
    ----------
    source : AbstractDataSource
        The wrapped random-access source.
    plan : BatchPlan
        The planned batches, as for :class:`~batchup.sources.BatchIterator`.
    owner : AutoParallelDataSource
        The source that chose; its :attr:`~AutoParallelDataSource.choice` is reported.
    """

    def __init__(self, source: Any, plan: Any, owner: AutoParallelDataSource) -> None:
        super().__init__(source, plan)
        self._owner = owner

    def _attach_recorder(self, rec: Any) -> None:
        super()._attach_recorder(rec)
        owner = self._owner
        rec.describe = lambda: {"kind": "serial", "choice": None if owner.choice is None else owner.choice.as_dict()}

    def close(self) -> None:
        """Nothing to cancel: batches are made when asked for."""

    def __enter__(self) -> InlineBatchIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
