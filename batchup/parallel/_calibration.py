"""The calibration behind ``num_workers="auto"`` (see :mod:`batchup.parallel.autotune` for the rules).

:class:`Calibration` stands in for the stream of a prefetching iterator
whose source has not chosen its pool: at the first batch it measures (a
:class:`_Trial`), sets the source's pool and choice, and hands the iterator a
stream that gives out the calibration's batches first.
"""
from __future__ import annotations

import collections
import itertools
import math
import time
from typing import Any

from batchup._profile import cpu_count, run_timed
from batchup.parallel import _shm, _worker
from batchup.parallel.autotune import (
    GAIN,
    INLINE_MAX_BATCHES,
    INLINE_MIN_BATCHES,
    LINEAR,
    MAX_ROUNDS,
    MAX_WAITING_THREADS,
    MIN_PARALLEL_SECONDS,
    PHASE_SECONDS,
    POOL_SECONDS,
    ROUNDS,
    THREADS_OVER_PROCESSES,
    WAITING_CPU_SHARE,
    AutoParallelDataSource,
    Choice,
    _size,
    default_memory_budget,
)
from batchup.parallel.errors import PoolClosedError
from batchup.parallel.pool import InlinePool, WorkerThreadPool
from batchup.parallel.prefetch import _BatchTasks
from batchup.parallel.work_stream import WorkStream
from batchup.sources.base import BatchIterator

__all__ = ["Calibration"]


def _thread_clock() -> tuple:
    """Return ``(seconds on the CPU, seconds waiting for a CPU)`` of the calling thread.

    The second is read from Linux's ``/proc/thread-self/schedstat`` (0 where
    it cannot be), so that a busy machine, where a runnable thread waits for
    its turn, does not look like work that waits for files.
    """
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            on_cpu, queued = f.read().split()[:2]
        return int(on_cpu) / 1e9, int(queued) / 1e9
    except (OSError, ValueError):
        return time.thread_time(), 0.0


def _nbytes(batch: Any) -> int:
    if isinstance(batch, (tuple, list)):
        return sum(_nbytes(b) for b in batch)
    if isinstance(batch, dict):
        return sum(_nbytes(b) for b in batch.values())
    n = getattr(batch, "nbytes", 0)
    return n if isinstance(n, int) else 0


# -- stand-ins for the stream of a ParallelBatchIterator ---------------------------------------------


class Calibration:
    """The stream of an iterator whose source has not chosen its pool yet: calibrate at the first batch."""

    calibrating = True
    stream = None

    def __init__(self, it: Any) -> None:
        self.it = it
        self.closed = False

    def calibrate(self) -> None:
        it = self.it
        src = it._source
        if src._closed:
            raise PoolClosedError("this prefetching source is closed; call prefetch() again")
        if src.pool is None:
            _calibrate(src, it)
        else:  # another iterator of the source chose meanwhile
            it._stream = it._new_stream()

    def _next(self) -> Any:
        if self.closed:
            raise StopIteration
        self.calibrate()
        return self.it._stream._next()

    def _next_timed(self) -> tuple:  # pragma: no cover - the iterator calibrates first
        return (self._next(), 0.0, 0.0, 0.0, 0, 0)

    def close(self) -> None:
        self.closed = True


class _ReadyFirst:
    """Hand out the calibration's batches, then (its error, or) the chosen pool's stream."""

    def __init__(self, it: Any, ready: collections.deque, stream: Any, error: Any) -> None:
        self.it, self.ready, self.stream, self.error = it, ready, stream, error
        self.closed = False

    def _next(self) -> Any:
        if self.ready:
            return self.ready.popleft()
        return self._after()

    def _after(self) -> Any:
        err, self.error = self.error, None
        if err is not None or self.stream is None:
            self.close()
            if err is not None:
                raise err
            raise StopIteration
        self.it._stream = self.stream  # from now on the stream itself, with no stand-in
        return self.stream._next()

    def _next_timed(self) -> tuple:
        if self.ready:
            flight = len(self.ready) + (0 if self.stream is None else len(self.stream._outstanding))
            return (self.ready.popleft(), 0.0, 0.0, 0.0, len(self.ready) + 1, flight)
        if self.error is None and self.stream is not None:
            self.it._stream = self.stream
            return self.stream._next_timed()
        return (self._after(), 0.0, 0.0, 0.0, 0, 0)

    def close(self) -> None:
        self.closed = True
        self.ready.clear()
        self.error = None
        if self.stream is not None:
            self.stream.close()


# -- the calibration ------------------------------------------------------------------------------


def _calibrate(src: AutoParallelDataSource, it: Any) -> None:
    """Measure on the first batches of ``it``'s stream, choose, and give ``it`` its stream."""
    t_start = time.perf_counter()
    cursor = it._inner
    tasks = _BatchTasks(cursor, src.ds, it._meta)  # calibration batches are not profiled
    ready: collections.deque = collections.deque()
    trial = _Trial(src, tasks, ready)
    try:
        decision = trial.run()
    except BaseException:
        trial.close_all(keep=None)
        raise
    if decision is None:  # too short, or a batch failed: this iterator only, made inline
        trial.close_all(keep=None)
        rest = None if trial.error is not None else _SerialRest(it, src.ds)
        it._stream = _ReadyFirst(it, ready, rest, trial.error)
        return
    kind, n, pool, shared, reason = decision
    trial.close_all(keep=pool)
    buffer, buffer_note = trial.buffer_for(kind, n)
    src.pool, src.shared_ds, src.batch_buffer_size = pool, shared, buffer
    budget, budget_source = trial.budget
    src.choice = Choice(
        kind=kind, num_workers=n, buffer_size=buffer, reason=f"{reason}; {buffer_note}",
        rates={k: round(v, 3) for k, v in trial.rates.items()}, batch_bytes=trial.batch_bytes,
        memory_budget=budget, budget_source=budget_source, seconds=time.perf_counter() - t_start,
        batches=len(ready),
    )
    rest = _SerialRest(it, src.ds) if kind == "inline" else it._new_stream()
    it._stream = _ReadyFirst(it, ready, rest, None)


class _SerialRest:
    """The rest of a run made in the calling thread by the serial iterator, on the iterator's own cursor.

    The serial iterator gathers several batches with one call where it can
    (spans); the batches it fetched ahead count as held, so a checkpoint
    still records only what the consumer received. After an error the run
    ends, as a prefetching stream's does.
    """

    _outstanding = ()

    def __init__(self, it: Any, ds: Any) -> None:
        self.it = it
        serial = BatchIterator(ds, it._inner.plan)
        serial._inner = it._inner  # walk the iterator's cursor, not a cursor of its own
        serial._take_span = getattr(it._inner, "take_span", None)
        self.serial = serial
        self.closed = False

    def _next(self) -> Any:
        if self.closed:
            raise StopIteration
        cursor = self.it._inner
        before = cursor.position
        try:
            batch = next(self.serial)
        except BaseException:
            self.closed = True
            raise
        meta = self.it._meta
        for _ in range(cursor.position - before):  # one per batch taken from the cursor (a span: several)
            meta.append((None, cursor.last_padding))
        return batch

    def _fetch(self, _indices: Any, _number: int) -> Any:
        return self._next()

    def _next_timed(self) -> tuple:
        # Timed like a task run in the calling thread: the report shows fetching and maps there.
        return (run_timed(self._fetch, None, 0), 0.0, 0.0, 0.0, 0, 0)

    def close(self) -> None:
        self.closed = True


class _Trial:
    """The measurements of one calibration (see the module documentation)."""

    def __init__(self, src: AutoParallelDataSource, tasks: _BatchTasks, ready: collections.deque) -> None:
        self.src, self.tasks, self.ready = src, tasks, ready
        self.error: Any = None
        self.rates: dict = {}
        self.notes: list = []
        self.pools: list = []
        self.batch_bytes = 0
        self.budget = (src.memory_budget, "given as memory_budget") if src.memory_budget else default_memory_budget()
        self.cpus = cpu_count()
        self.full = False  # the batches kept reached the memory budget
        self.per_batch = 0.0  # seconds a batch took in the calling thread

    # -- measuring ------------------------------------------------------------------------
    def inline(self) -> tuple:
        """Make batches in the calling thread; return (seconds per batch, CPU share, batches made).

        The CPU share is of the time the thread was not waiting for a CPU.
        """
        times: list = []
        (cpu0, queued0), start = _thread_clock(), time.perf_counter()
        while len(times) < INLINE_MAX_BATCHES and (
            len(times) < INLINE_MIN_BATCHES or time.perf_counter() - start < PHASE_SECONDS
        ):
            t0 = time.perf_counter()
            try:
                fn, args = next(self.tasks)
                value = fn(*args)
            except StopIteration:
                break
            except Exception as err:  # noqa: BLE001 - delivered after the batches before it
                self.error = err
                break
            times.append(time.perf_counter() - t0)
            self.ready.append(value)
            self.batch_bytes = max(self.batch_bytes, _nbytes(value))
            if (len(self.ready) + 1) * self.batch_bytes > self.budget[0]:
                self.full = True
                break
        cpu, queued = _thread_clock()
        runnable = time.perf_counter() - start - (queued - queued0)  # the time it could have run
        if not times:
            return 0.0, 0.0, 0
        kept = times[1:] if len(times) >= 3 else times  # the first batch may warm caches up
        per_batch = sorted(kept)[len(kept) // 2]
        return per_batch, min(1.0, (cpu - cpu0) / runnable) if runnable > 0 else 1.0, len(times)

    def pool_rate(self, pool: Any, shared: Any, count: int) -> float | None:
        """Run ``count`` batches on ``pool``; return its batches per second (None if a batch failed)."""
        n = pool.num_workers
        self.tasks.shared = shared
        t0 = time.perf_counter()
        stream = WorkStream(pool, itertools.islice(self.tasks, count), 2 * n, timeout=self.src.timeout,
                            _label="batch", _first_number=self.tasks.cursor.position)
        stamps = []
        try:
            for value in stream.retrieve_iter():
                stamps.append(time.perf_counter() - t0)
                self.ready.append(value)
        except Exception as err:  # noqa: BLE001 - delivered after the batches before it
            self.error = err
            return None
        finally:
            stream.close()
        k = len(stamps)
        if k > n and stamps[-1] > stamps[n - 1]:
            # From the first round's results to the last: start-up costs are left out.
            return (k - n) / (stamps[-1] - stamps[n - 1])
        return k / stamps[-1] if k and stamps[-1] > 0 else 0.0

    def count(self, n: int, per_batch: float) -> int:
        """Return the batches to measure ``n`` workers on: whole rounds, within the run and the budget."""
        rounds = min(MAX_ROUNDS, max(ROUNDS, math.ceil(POOL_SECONDS / max(per_batch, 1e-9))))
        left = self.tasks.cursor.remaining()
        cap = self.budget[0] // max(1, self.batch_bytes) - len(self.ready)
        while rounds > ROUNDS and ((left is not None and rounds * n > left) or rounds * n > cap):
            rounds -= 1
        return rounds * n

    def fit_workers(self, n: int) -> int:
        """Return ``n``, or fewer workers if the run has too few batches left to measure ``n`` (at least 2)."""
        left = self.tasks.cursor.remaining()
        if left is not None and left < ROUNDS * n:
            return max(2, left // ROUNDS)
        return n

    def room(self, need: int) -> str | None:
        """Return why ``need`` more batches cannot be made now (too few left, or over budget), else None."""
        left = self.tasks.cursor.remaining()
        if left is not None and left < need:
            return f"only {left} batches were left to measure on"
        cap = self.budget[0] // max(1, self.batch_bytes)
        if len(self.ready) + need > cap:
            return f"{len(self.ready) + need} batches of {_size(self.batch_bytes)} would exceed the memory budget"
        return None

    # -- deciding ---------------------------------------------------------------------------
    def run(self) -> tuple | None:
        """Measure; return ``(kind, workers, pool, shared source, reason)``, or None to leave it undecided."""
        per_batch, cpu_share, made = self.inline()
        self.per_batch = per_batch
        if self.error is not None or not made:
            return None
        src, cpus = self.src, self.cpus
        self.rates["calling thread"] = 1.0 / per_batch if per_batch > 0 else math.inf
        measured = (f"a batch took {per_batch * 1e3:.3g} ms in the calling thread, {cpu_share:.0%} of it on the CPU "
                    f"({_size(self.batch_bytes)})")
        budget = self.budget[0]
        if self.batch_bytes > budget:
            return self._inline(f"{measured}; one batch is larger than the memory budget ({_size(budget)})")
        if self.full:
            return self._inline(f"{measured}; only {budget // self.batch_bytes} batches fit the memory budget "
                                f"({_size(budget)}): too few to prepare ahead")
        if made < INLINE_MIN_BATCHES or self.tasks.cursor.remaining() == 0:
            return None
        if per_batch < MIN_PARALLEL_SECONDS:
            return self._inline(f"{measured}: less than the {MIN_PARALLEL_SECONDS * 1e3:g} ms for which handing "
                                "a batch to a worker pays")
        inline_rate = self.rates["calling thread"]
        threads = None
        if "thread" in src.kinds:
            waits = cpu_share < WAITING_CPU_SHARE
            most = min(MAX_WAITING_THREADS, 4 * cpus)
            n = min(most, max(2, math.ceil(cpus / max(cpu_share, 0.05)))) if waits else cpus
            n = self.fit_workers(n)
            why_not = "this machine has 1 CPU and the work keeps it busy" if n < 2 else self.room(ROUNDS * n)
            if why_not:
                self.notes.append(f"threads not tried: {why_not}")
            else:
                pool = WorkerThreadPool(n)
                try:
                    rate = self.pool_rate(pool, pool.shared_constant(src.ds), self.count(n, per_batch))
                finally:
                    # Closed now, and its threads gone: a process pool started next may then use 'fork'.
                    pool.close()
                    pool._core.executor.shutdown(wait=True)
                if rate is None:
                    return None
                self.rates[f"{n} threads"] = rate
                threads = (rate, n)
        processes = None
        if "process" in src.kinds:
            why_not = self._why_not_processes(threads, inline_rate)
            if why_not:
                self.notes.append(f"processes not tried: {why_not}")
            else:
                processes = self._try_processes(cpus)
                if processes is None and self.error is not None:
                    return None
        return self._decide(measured, inline_rate, threads, processes)

    def _why_not_processes(self, threads: Any, inline_rate: float) -> str | None:
        cpus = self.cpus
        if cpus < 2:
            return "this machine has 1 CPU"
        if _worker.IN_WORKER:
            return "this is a worker process of another pool"
        if threads is not None and threads[0] >= LINEAR * min(threads[1], cpus) * inline_rate:
            return f"{threads[1]} threads already scaled with the {cpus} CPUs"
        try:
            _shm.dump_constant(self.src.ds, None)  # a cheap scan: large arrays are not copied
        except Exception as err:  # noqa: BLE001 - any pickling failure
            return f"the source cannot be pickled ({type(err).__name__}: {err})"
        return self.room(ROUNDS * cpus)

    def _try_processes(self, n: int) -> tuple | None:
        from batchup.parallel.process_pool import WorkerProcessPool

        try:
            pool = WorkerProcessPool(n, start_method=self.src.start_method)
        except (OSError, RuntimeError, ValueError) as err:
            self.notes.append(f"processes not tried: they could not start ({err})")
            return None
        self.pools.append(pool)
        try:
            shared = pool.shared_constant(self.src.ds)
        except (TypeError, OSError) as err:
            self.notes.append(f"processes not tried: the source could not be shared ({err})")
            return None
        rate = self.pool_rate(pool, shared, self.count(n, self.per_batch))
        if rate is None:
            return None
        self.rates[f"{n} processes"] = rate
        return (rate, n, pool, shared)

    def _decide(self, measured: str, inline_rate: float, threads: Any, processes: Any) -> tuple:
        rates = ", ".join(f"{k}: {v:.3g} batches/s" for k, v in self.rates.items())
        notes = "".join(f"; {n}" for n in self.notes)
        best = max([c for c in (threads, processes) if c is not None], key=lambda c: c[0], default=None)
        if best is None or best[0] < GAIN * inline_rate:
            return self._inline(f"{measured}; {rates}: no pool made batches {GAIN:.2g}x as fast as the calling "
                                f"thread{notes}")
        why = "the fastest"
        if processes is not None and threads is not None and best is processes and \
                threads[0] >= THREADS_OVER_PROCESSES * processes[0]:
            best = threads
            why = f"within {1 - THREADS_OVER_PROCESSES:.0%} of {processes[1]} processes, and cheaper"
        gain = f"{best[0] / inline_rate:.2f}x the calling thread"
        if best is threads:
            n = threads[1]
            pool = WorkerThreadPool(n)
            return ("thread", n, pool, pool.shared_constant(self.src.ds),
                    f"{measured}; {rates}: {n} threads were {why} ({gain}){notes}")
        _, n, pool, shared = best
        return ("process", n, pool, shared, f"{measured}; {rates}: {n} processes were {why} ({gain}){notes}")

    def _inline(self, reason: str) -> tuple:
        return ("inline", 0, InlinePool(), self.src.ds, reason)

    def buffer_for(self, kind: str, n: int) -> tuple:
        """Return ``(buffer size, why)`` for ``n`` workers within the memory budget."""
        if self.src._fixed_buffer is not None:
            return self.src._fixed_buffer, "buffer_size as given"
        if kind == "inline":
            return 1, "buffer 1 (batches are made when asked for)"
        want = max(4, 2 * n)
        budget = self.budget[0]
        fit = budget // max(1, self.batch_bytes)
        if fit >= want:
            return want, f"buffer {want} (max(4, 2 x workers); {want} x {_size(self.batch_bytes)} is within the " \
                         f"{_size(budget)} memory budget)"
        return max(1, fit), (f"buffer {max(1, fit)} (only {max(1, fit)} batches of {_size(self.batch_bytes)} fit "
                             f"the {_size(budget)} memory budget)")

    def close_all(self, keep: Any) -> None:
        for pool in self.pools:
            if pool is not keep:
                pool.close()
