"""The calibration behind ``num_workers="auto"`` (see :mod:`batchup.parallel.autotune` for the rules).

:class:`Calibration` stands in for the stream of a prefetching iterator
whose source has not chosen its pool. It hands out the iteration's first
batches while it measures how they are made (:func:`_calibrate`, a
generator, so that the consumer works on each batch while the next
measurement runs): first in the calling thread, then on the pools it tries,
each of which gets all of its batches at once so that its workers never wait
for the consumer. The rate of a pool comes from the times its workers
finished their batches (sent back with each batch, as for the stall report),
so a consumer that takes its time does not slow the measurement down. Once
it has chosen, it sets the source's pool and choice and gives the iterator
its stream.
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Any, Generator, Iterator

from batchup._profile import Timed, cpu_count, run_timed
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
from batchup.parallel.prefetch import _TimedBatchTasks
from batchup.parallel.work_stream import WorkStream
from batchup.sources.base import BatchIterator

__all__ = ["Calibration"]


class Calibration:
    """The stream of an iterator whose source has not chosen its pool: calibrate on the batches handed out."""

    calibrating = True
    stream = None
    _outstanding = ()

    def __init__(self, it: Any) -> None:
        self.it = it
        self.closed = False
        self.run: Generator | None = None

    def _next(self) -> Any:
        if self.closed:
            raise StopIteration
        it = self.it
        if self.run is None:
            src = it._source
            if src._closed:
                raise PoolClosedError("this prefetching source is closed; call prefetch() again")
            if src.pool is not None:  # another iterator of the source chose meanwhile
                _install(it, src)
                return it._stream._next()
            self.run = _calibrate(src, it)
        try:
            return next(self.run)
        except StopIteration:
            pass
        except BaseException:
            self.close()
            raise
        if it._stream is self:  # the run ended before anything was chosen
            self.closed = True
            raise StopIteration
        return it._stream._next()

    def _next_timed(self) -> tuple:  # pragma: no cover - the iterator times calibration itself
        return (self._next(), 0.0, 0.0, 0.0, 0, 0)

    def close(self) -> None:
        self.closed = True
        if self.run is not None:
            self.run.close()  # its pools are closed


def _install(it: Any, src: AutoParallelDataSource) -> None:
    """Give ``it`` the stream of the source's choice."""
    it._stream = _stream_for(it, src)


def _stream_for(it: Any, src: AutoParallelDataSource) -> Any:
    """Return a stream for ``it`` as the source chose (the serial iterator when it is the calling thread)."""
    inline = src.choice is None or src.choice.kind == "inline"
    return _SerialRest(it, src.ds) if inline else it._new_stream()


def _calibrate(src: AutoParallelDataSource, it: Any) -> Generator:
    """Yield the first batches of ``it`` while measuring; then choose and give ``it`` its stream.

    A pool's batches are all submitted at once. As soon as all are made, the
    next step starts (the next pool, or the chosen stream, which then
    prefetches) while the consumer still works on the batches made: they are
    handed out first, so the order never changes.
    """
    t_start = time.perf_counter()
    trial = _Trial(src, it)
    pending: list = []  # batches made and not handed out yet
    error = None
    decision: Any = None
    try:
        yield from trial.inline()
        decision = trial.after_inline()
        if decision is None and trial.threads_wanted():
            pending, error = yield from trial.threads()
        if decision is None and error is None and trial.processes_wanted():
            pending, error = yield from trial.processes(pending)
        if decision is None and error is None:
            decision = trial.decide()
    finally:
        trial.close_pools()  # all but the chosen one; all of them if the run stopped here
    final = None
    if error is None and decision == "undecided":  # too few batches: this run made inline, nothing chosen
        final = _SerialRest(it, src.ds)
    elif error is None and decision is not None:
        kind, n, pool, shared, reason = decision
        buffer, buffer_note = trial.buffer_for(kind, n)
        budget, budget_source = trial.budget
        src.pool, src.shared_ds, src.batch_buffer_size = pool, shared, buffer
        src.choice = Choice(
            kind=kind, num_workers=n, buffer_size=buffer, reason=f"{reason}; {buffer_note}",
            rates={k: round(v, 3) for k, v in trial.rates.items()}, batch_bytes=trial.batch_bytes,
            memory_budget=budget, budget_source=budget_source, seconds=time.perf_counter() - t_start,
            batches=trial.made,
        )
        final = _stream_for(it, src)  # starts prefetching now, behind the batches still pending
    yield from pending
    if error is not None:
        raise error
    it._stream = final


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


def _rate(done: list, n: int) -> float:
    """Return the batches per second of ``n`` workers that finished batches at the times ``done``.

    Each span from one finish to the ``n``-th next one is the time the pool
    took for ``n`` batches (one round); the median span is robust to one
    slow batch (another job taking the CPU for a moment). The times are the
    workers' own (the writing to shared memory included), so neither
    starting the pool nor the consumer's pace counts.
    """
    done = sorted(done)
    spans = sorted(done[i] - done[i - n] for i in range(n, len(done)))
    if not spans:
        return 0.0
    median = spans[len(spans) // 2]
    return n / median if median > 0 else math.inf


def _typical(times: list) -> float:
    """The time of a typical batch: the median leaving the first (which may warm caches up) out, or the quicker of two."""
    if len(times) < 3:
        return min(times)
    kept = sorted(times[1:])
    return kept[len(kept) // 2]


def _nbytes(batch: Any) -> int:
    if isinstance(batch, (tuple, list)):
        return sum(_nbytes(b) for b in batch)
    if isinstance(batch, dict):
        return sum(_nbytes(b) for b in batch.values())
    n = getattr(batch, "nbytes", 0)
    return n if isinstance(n, int) else 0


class _Trial:
    """The measurements and the decision of one calibration (see :mod:`batchup.parallel.autotune`)."""

    def __init__(self, src: AutoParallelDataSource, it: Any) -> None:
        self.src = src
        # Calibration batches report their timings (stripped before they are handed out).
        self.tasks = _TimedBatchTasks(it._inner, src.ds, it._meta)
        self.cursor = it._inner
        self.rates: dict = {}
        self.notes: list = []
        self.pools: list = []
        self.kept: Any = None
        self.made = 0
        self.batch_bytes = 0
        self.budget = (src.memory_budget, "given as memory_budget") if src.memory_budget else default_memory_budget()
        self.cpus = cpu_count()
        self.per_batch = 0.0  # seconds a batch took in the calling thread
        self.cpu_share = 1.0
        self.full = False  # the batches measured in the calling thread reached the memory budget
        self.measured = ""
        self.thread_result: tuple | None = None
        self.process_result: tuple | None = None

    # -- the calling thread ------------------------------------------------------------------
    def inline(self) -> Iterator:
        """Yield batches made in the calling thread, timing each (and the CPU it used)."""
        times: list = []
        cpu = runnable = 0.0
        while len(times) < INLINE_MAX_BATCHES and (len(times) < INLINE_MIN_BATCHES or sum(times) < PHASE_SECONDS):
            try:
                fn, args = next(self.tasks)
            except StopIteration:
                break
            (c0, q0), t0 = _thread_clock(), time.perf_counter()
            value = fn(*args)
            t1 = time.perf_counter()
            c1, q1 = _thread_clock()
            times.append(t1 - t0)
            cpu += c1 - c0
            runnable += (t1 - t0) - (q1 - q0)  # the time it could have run
            self.made += 1
            batch = value.batch if type(value) is Timed else value
            self.batch_bytes = max(self.batch_bytes, _nbytes(batch))
            full = 2 * self.batch_bytes > self.budget[0]
            yield batch
            if full:
                self.full = True
                break
            if len(times) >= INLINE_MIN_BATCHES and _typical(times) < MIN_PARALLEL_SECONDS:
                break  # quick enough to stay here: no need to measure further
        if times:
            self.per_batch = _typical(times)
            self.cpu_share = min(1.0, cpu / runnable) if runnable > 0 else 1.0
        self.inline_batches = len(times)

    def after_inline(self) -> Any:
        """Return a decision that needs no pool (inline, or undecided), or None to try pools."""
        made, per_batch = self.inline_batches, self.per_batch
        if not made:
            return "undecided"
        self.rates["calling thread"] = 1.0 / per_batch if per_batch > 0 else math.inf
        self.measured = (f"a batch took {per_batch * 1e3:.3g} ms in the calling thread, {self.cpu_share:.0%} of it "
                         f"on the CPU ({_size(self.batch_bytes)})")
        budget = self.budget[0]
        if self.batch_bytes > budget:
            return self._inline(f"{self.measured}; one batch is larger than the memory budget ({_size(budget)})")
        if self.full:
            return self._inline(f"{self.measured}; only {budget // self.batch_bytes} batch fits the memory budget "
                                f"({_size(budget)}): none can be prepared ahead")
        if made < INLINE_MIN_BATCHES or self.cursor.remaining() == 0:
            return "undecided"
        if per_batch < MIN_PARALLEL_SECONDS:
            return self._inline(f"{self.measured}: less than the {MIN_PARALLEL_SECONDS * 1e3:g} ms for which "
                                "handing a batch to a worker pays")
        return None

    # -- pools ---------------------------------------------------------------------------------
    def threads_wanted(self) -> bool:
        if "thread" not in self.src.kinds:
            return False
        cpus = self.cpus
        waits = self.cpu_share < WAITING_CPU_SHARE
        most = min(MAX_WAITING_THREADS, 4 * cpus)
        n = min(most, max(2, math.ceil(cpus / max(self.cpu_share, 0.05)))) if waits else cpus
        left = self.cursor.remaining()
        if left is not None and left < ROUNDS * n:
            n = max(2, left // ROUNDS)
        why_not = "this machine has 1 CPU and the work keeps it busy" if n < 2 else self.room(ROUNDS * n)
        if why_not:
            self.notes.append(f"threads not tried: {why_not}")
            return False
        self.n_threads = n
        return True

    def threads(self) -> Generator[Any, None, tuple]:
        n = self.n_threads
        pool = WorkerThreadPool(n)
        try:
            rate, rest, error = yield from self.measure(pool, pool.shared_constant(self.src.ds), [])
        finally:
            # Closed now, and its threads gone: a process pool started next may then use 'fork'.
            pool.close()
            pool._core.executor.shutdown(wait=True)
        if error is None:
            self.rates[f"{n} threads"] = rate
            self.thread_result = (rate, n)
        return rest, error

    def processes_wanted(self) -> bool:
        if "process" not in self.src.kinds:
            return False
        why_not = self._why_not_processes()
        if why_not:
            self.notes.append(f"processes not tried: {why_not}")
            return False
        return True

    def _why_not_processes(self) -> str | None:
        cpus, threads = self.cpus, self.thread_result
        if cpus < 2:
            return "this machine has 1 CPU"
        if _worker.IN_WORKER:
            return "this is a worker process of another pool"
        if threads is not None and threads[0] >= LINEAR * min(threads[1], cpus) * self.rates["calling thread"]:
            return f"{threads[1]} threads already scaled with the {cpus} CPUs"
        try:
            _shm.dump_constant(self.src.ds, None)  # a cheap scan: large arrays are not copied
        except Exception as err:  # noqa: BLE001 - any pickling failure
            return f"the source cannot be pickled ({type(err).__name__}: {err})"
        return self.room(ROUNDS * cpus)

    def processes(self, pending: list) -> Generator[Any, None, tuple]:
        """Start a process pool and its measurement; yield ``pending`` (made earlier), then its batches."""
        from batchup.parallel.process_pool import WorkerProcessPool

        n = self.cpus
        try:
            pool = WorkerProcessPool(n, start_method=self.src.start_method)
        except (OSError, RuntimeError, ValueError) as err:
            self.notes.append(f"processes not tried: they could not start ({err})")
            return pending, None
        self.pools.append(pool)
        try:
            shared = pool.shared_constant(self.src.ds)
        except (TypeError, OSError) as err:
            self.notes.append(f"processes not tried: the source could not be shared ({err})")
            return pending, None
        rate, rest, error = yield from self.measure(pool, shared, pending)
        if error is None:
            self.rates[f"{n} processes"] = rate
            self.process_result = (rate, n, pool, shared)
        return rest, error

    def measure(self, pool: Any, shared: Any, before: list) -> Generator[Any, None, tuple]:
        """Submit a pool's measurement batches at once; yield ``before``, then its batches until all are made.

        Return ``(batches per second (see :func:`_rate`), the batches made
        but not yet handed out, the error of a batch among those or None)``.
        """
        n = pool.num_workers
        count = self.count(n)
        self.tasks.shared = shared
        stream = WorkStream(pool, itertools.islice(self.tasks, count), count, timeout=self.src.timeout,
                            _label="batch", _first_number=self.cursor.position)
        done: list = []
        rest: list = []
        error = None
        try:
            yield from before
            while not all(f.done() for f in stream._outstanding):
                yield self._strip(stream._next(), done)
            # All made: take them now (no waiting), so the next step can start meanwhile.
            try:
                for value in stream.retrieve_iter():
                    rest.append(self._strip(value, done))
            except Exception as err:  # noqa: BLE001 - raised after the batches before it
                error = err
        finally:
            stream.close()
        return _rate(done, n), rest, error

    def _strip(self, value: Any, done: list) -> Any:
        self.made += 1
        if type(value) is Timed:
            _, _, _, encode, end = value.timings
            done.append(end + encode)
            return value.batch
        return value

    def count(self, n: int) -> int:
        """Return the batches to measure ``n`` workers on: whole rounds, within the run and the budget."""
        rounds = min(MAX_ROUNDS, max(ROUNDS, math.ceil(POOL_SECONDS / max(self.per_batch, 1e-9))))
        left = self.cursor.remaining()
        cap = self.budget[0] // max(1, self.batch_bytes)
        while rounds > ROUNDS and ((left is not None and rounds * n > left) or rounds * n > cap):
            rounds -= 1
        return rounds * n

    def room(self, need: int) -> str | None:
        """Return why ``need`` batches cannot be measured on a pool (too few left, over budget), else None."""
        left = self.cursor.remaining()
        if left is not None and left < need:
            return f"only {left} batches were left to measure on"
        if need * self.batch_bytes > self.budget[0]:
            return f"{need} batches of {_size(self.batch_bytes)} in flight would exceed the memory budget"
        return None

    # -- deciding ---------------------------------------------------------------------------
    def decide(self) -> tuple:
        inline_rate = self.rates["calling thread"]
        threads, processes = self.thread_result, self.process_result
        rates = ", ".join(f"{k}: {v:.3g} batches/s" for k, v in self.rates.items())
        notes = "".join(f"; {n}" for n in self.notes)
        best = max([c for c in (threads, processes) if c is not None], key=lambda c: c[0], default=None)
        if best is None or best[0] < GAIN * inline_rate:
            return self._inline(f"{self.measured}; {rates}: no pool made batches {GAIN:.2g}x as fast as the calling "
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
            self.kept = pool
            return ("thread", n, pool, pool.shared_constant(self.src.ds),
                    f"{self.measured}; {rates}: {n} threads were {why} ({gain}){notes}")
        _, n, pool, shared = best
        self.kept = pool
        return ("process", n, pool, shared, f"{self.measured}; {rates}: {n} processes were {why} ({gain}){notes}")

    def _inline(self, reason: str) -> tuple:
        pool = InlinePool()
        self.kept = pool
        return ("inline", 0, pool, self.src.ds, reason)

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
            return want, (f"buffer {want} (max(4, 2 x workers); {want} x {_size(self.batch_bytes)} is within the "
                          f"{_size(budget)} memory budget)")
        return max(1, fit), (f"buffer {max(1, fit)} (only {max(1, fit)} batches of {_size(self.batch_bytes)} fit "
                             f"the {_size(budget)} memory budget)")

    def close_pools(self) -> None:
        for pool in self.pools:
            if pool is not self.kept:
                pool.close()
