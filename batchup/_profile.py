"""The recorder behind the stall report: what a profiled pipeline measures, and where.

:func:`batchup.profiling.profile` attaches one :class:`Recorder` to an
iterator. The pieces that measure are small and live where the work is:

* the consumer's side (:class:`batchup.profiling.ProfiledIterator`) times
  every ``next()`` call and the gaps between them;
* the pipeline's own iterator (the serial :class:`~batchup.sources.BatchIterator`
  or a prefetching :class:`~batchup.parallel.ParallelBatchIterator`) times
  planning, fetching, waiting, decoding and dispatching in the consumer's
  thread;
* a profiled task (:func:`run_timed`) times one batch in whatever thread or
  process prepares it and sends the figures back with the batch
  (:class:`Timed`); a process worker adds the time it took to write the
  batch to shared memory;
* a map function is timed by :meth:`MapDataSource.apply
  <batchup.sources.MapDataSource.apply>` through :data:`LOCAL`, a
  thread-local slot that holds an accumulator only while a profiled fetch
  runs in that thread.

When nothing is profiled, the only cost per batch is one ``is None`` check
in the serial or parallel iterator, and the test of the flag :data:`ON` in
``MapDataSource.apply``.
This module imports only the standard library, so every layer may use it.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

__all__ = ["LOCAL", "Recorder", "Timed", "cpu_count", "run_timed", "timed_apply"]

_clock = time.perf_counter


class _Local(threading.local):
    #: A one-element list that map time is added to, while a profiled fetch runs in this thread.
    maps: Any = None


#: Per thread: where :func:`timed_apply` adds map time (``None``: nothing is profiled here).
LOCAL = _Local()
#: True once anything was profiled in this process: until then the map hook reads only this flag.
ON = False


def switch_on() -> None:
    """Note that this process profiles (see :data:`ON`)."""
    global ON
    ON = True


def timed_apply(source: Any, batch: Any, batch_number: Any) -> Any:
    """Return ``source.apply(batch, batch_number)``, adding its seconds to this thread's map timer.

    The timer is cleared while the function runs, so a map inside a map is
    counted once, by the outer one.
    """
    local = LOCAL
    acc = local.maps
    local.maps = None
    t0 = _clock()
    try:
        return source.apply(batch, batch_number)
    finally:
        acc[0] += _clock() - t0
        local.maps = acc


class Timed:
    """A batch and the figures of the task that made it: ``[seconds, map seconds, worker, encode seconds, end]``.

    ``worker`` is ``(pid, thread id)``; ``encode seconds`` is filled in by a
    process worker (writing the batch to shared memory), else 0; ``end`` is
    when the task finished, by :func:`time.monotonic` (one clock for every
    process of the machine).
    """

    __slots__ = ("batch", "timings")

    def __init__(self, batch: Any, timings: list) -> None:
        self.batch = batch
        self.timings = timings

    def __reduce__(self) -> tuple:
        return Timed, (self.batch, self.timings)


def run_timed(fetch: Callable, indices: Any, batch_number: int) -> Timed:
    """Return ``Timed(fetch(indices, batch_number), figures)``: the task of a profiled prefetcher."""
    if not ON:
        switch_on()
    local = LOCAL
    outer = local.maps
    acc = [0.0]
    local.maps = acc
    t0 = _clock()
    try:
        batch = fetch(indices, batch_number)
    finally:
        local.maps = outer
    seconds = _clock() - t0
    return Timed(batch, [seconds, acc[0], (os.getpid(), threading.get_ident()), 0.0, time.monotonic()])


def cpu_count() -> int:
    """Return the CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Recorder:
    """Seconds per stage of one profiled iteration; filled as it runs, read by the stall report.

    Consumer's thread (all in seconds): ``in_next`` (inside ``next()``),
    ``first_next`` (the first call), ``node`` (inside the pipeline's own
    iterator), ``plan``, ``fetch`` (serial fetching, maps included),
    ``node_map`` (the part of ``fetch`` spent in map functions), ``wait``
    (blocked on workers), ``decode`` (rebuilding results), ``dispatch``
    (handing tasks to the pool), ``calibration`` (``num_workers="auto"``).
    ``maps[0]`` is every map second in the consumer's thread (also maps
    applied outside the pipeline's iterator).

    Workers: ``w_batches`` timed batches, ``w_seconds``, ``w_map``,
    ``w_encode`` and ``w_by`` (seconds per worker). Queue: at every
    ``next()``, the batches ready and in flight.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.start: float | None = None
        self.last: float | None = None
        self.cpu_start = 0.0
        self.cpu_last = 0.0
        self.in_next = 0.0
        self.first_next = 0.0
        self.maps = [0.0]
        self.describe: Callable[[], dict] | None = None
        self.node = 0.0
        #: True when the profiler wraps the pipeline's iterator itself (no adapter between):
        #: then ``node`` is ``in_next`` and the iterator skips timing batches it only hands out.
        self.direct = False
        self.plan = 0.0
        self.fetch = 0.0
        self.node_map = 0.0
        self.wait = 0.0
        self.decode = 0.0
        self.dispatch = 0.0
        self.calibration = 0.0
        self.untimed = 0
        self.w_batches = 0
        self.w_seconds = 0.0
        self.w_map = 0.0
        self.w_encode = 0.0
        self.w_by: dict = {}
        self.q_calls = 0
        self.q_ready = 0
        self.q_flight = 0
        self.q_empty = 0

    # -- the pipeline's iterator reports here ---------------------------------------------
    def serial(self, plan: float, fetch: float, maps: float, total: float) -> None:
        """One batch made in the consumer's thread: planning, fetching (``maps`` of it in map functions)."""
        self.plan += plan
        self.fetch += fetch
        self.node_map += maps
        self.node += total

    def prefetched(self, value: Any, times: tuple, inline: bool) -> Any:
        """One batch taken from a stream; ``times`` = (wait, get, fill, plan, ready, in flight, calibration).

        Return the batch (unwrapped from :class:`Timed`). ``inline``: the
        task ran in the consumer's thread, inside ``get``.
        """
        wait, get, fill, plan, ready, flight, calibration = times
        self.wait += wait
        self.plan += plan
        self.dispatch += max(0.0, fill - plan)
        self.calibration += calibration
        self.q_calls += 1
        self.q_ready += ready
        self.q_flight += flight
        if not ready:
            self.q_empty += 1
        if type(value) is not Timed:
            self.untimed += 1
            self.decode += get
            return value
        seconds, maps, worker, encode, _ = value.timings
        self.w_batches += 1
        self.w_seconds += seconds
        self.w_map += maps
        self.w_encode += encode
        self.w_by[worker] = self.w_by.get(worker, 0.0) + seconds + encode
        self.decode += max(0.0, get - seconds) if inline else get
        return value.batch
