"""Find the bottleneck of a batch pipeline: ``batchup.profile(iterator)`` and its stall report.

``it = batchup.profile(ds.batch_iterator(...))`` (or over a prefetching
iterator, or an adapter's iterator such as ``iter_tensors(...)``) yields the
same batches and records where the time goes; ``print(it.stats())`` shows a
small table and a verdict, and ``it.stats().as_dict()`` gives the same as a
JSON-serialisable dict for logging.

What is measured (see :mod:`batchup._profile` for how):

* the consumer's own work between ``next()`` calls, and its time inside them;
* inside ``next()``: planning indices (the sampler's cursor), fetching or
  gathering samples and map functions (serially), or waiting for workers,
  taking a result (decoding it from shared memory) and handing new tasks to
  the pool (prefetching); an adapter's own work; calibration for
  ``num_workers="auto"``;
* in the workers: fetching, map functions and writing the batch to shared
  memory (process workers), the workers' utilisation, and the queue: batches
  ready and in flight at every ``next()``.

Profiling adds one to a few microseconds per batch. When nothing is profiled,
the pipeline does no timing at all.
"""
from __future__ import annotations

import time
from typing import Any

from batchup._iterator import WrappingIterator
from batchup._profile import LOCAL, Recorder, switch_on
from batchup._stall import summary, table

__all__ = ["ProfiledIterator", "StallReport", "profile"]

_clock = time.perf_counter


def profile(iterator: Any) -> ProfiledIterator:
    """Return ``iterator`` with a stall report: the same batches, and ``stats()`` saying where time goes.

    Parameters
    ----------
    iterator : iterator or iterable of batches
        Any: ``ds.batch_iterator(...)``, a prefetching iterator
        (``ds.prefetch(...).batch_iterator(...)``), an adapter's iterator
        (``iter_tensors``, ``prefetch_to_device``) over one of them, or any
        other iterable (then only the consumer's and the iterator's times
        are known). Profile it before taking batches: a prefetching
        iterator's batches already under way come back without worker
        timings (the report says how many were timed).

    Returns
    -------
    ProfiledIterator
        Yields the batches of ``iterator``; :meth:`ProfiledIterator.stats`
        returns a :class:`StallReport`. ``len()``, ``state_dict()`` and the
        rest are those of ``iterator``.

    Raises
    ------
    TypeError
        If ``iterator`` is not iterable (a data source, say: profile its
        ``batch_iterator(...)``).
    ValueError
        If the pipeline under ``iterator`` is already being profiled.

    Examples
    --------
    >>> import numpy as np
    >>> import batchup
    >>> from batchup.sources import ArrayDataSource
    >>> it = batchup.profile(ArrayDataSource([np.arange(10)]).batch_iterator(4))
    >>> [b[0].tolist() for b in it]
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    >>> report = it.stats()
    >>> report.as_dict()["batches"], report.as_dict()["pipeline"]["kind"]
    (3, 'serial')
    """
    if isinstance(iterator, ProfiledIterator):
        return iterator
    if not hasattr(iterator, "__iter__") and not hasattr(iterator, "__next__"):
        hint = "; profile its batch_iterator(...)" if hasattr(iterator, "batch_iterator") else ""
        raise TypeError(f"iterator must be an iterator or iterable of batches, got {type(iterator).__name__}{hint}")
    return ProfiledIterator(iterator)


def _attach(it: Any, rec: Recorder) -> None:
    """Give the recorder to the pipeline's own iterator: ``it`` or one it wraps (``_inner``)."""
    node = it
    for _ in range(64):
        hook = getattr(node, "_attach_recorder", None)
        if hook is not None:
            if getattr(node, "_rec", None) is not None:
                raise ValueError(f"this {type(node).__name__} is already being profiled")
            # Nothing between the profiler and the pipeline's iterator: its time is the
            # profiler's in_next, so it need not time the batches it merely hands out.
            rec.direct = node is it
            hook(rec)
            return
        node = getattr(node, "_inner", None)
        if node is None:
            return


class ProfiledIterator(WrappingIterator):
    """Yield the batches of another iterator and time them; see :func:`profile`.

    State, length and padding are the wrapped iterator's: a checkpoint
    taken here restores into the unprofiled iterator and the other way round.
    Attributes it does not have are looked up on the wrapped iterator.

    Parameters
    ----------
    iterator : iterable
        The batches to time: a batchup iterator (whose stages are then timed
        one by one) or any iterable (timed as one ``'pipeline'`` stage).
    """

    def __init__(self, iterator: Any) -> None:
        super().__init__(iter(iterator))
        switch_on()
        self.recorder = Recorder()
        _attach(self._inner, self.recorder)
        self._ended = False
        self._next_inner = self._inner.__next__
        self._maps = self.recorder.maps
        if self.recorder.direct:
            # The pipeline's iterator is right underneath and times map functions around its
            # own fetches: the leaner __next__ of _DirectProfiledIterator does the rest.
            self.__class__ = _DirectProfiledIterator

    def __next__(self) -> Any:
        # An adapter between, or an iterator batchup cannot look into: map functions run
        # anywhere inside next() in this thread are timed from here.
        local = LOCAL
        outer = local.maps
        local.maps = self._maps
        try:
            return self._timed_next()
        finally:
            local.maps = outer

    def _timed_next(self) -> Any:
        # The hot path of every profiled batch: two clock reads and a few stores (the stall
        # report derives the rest), so that profiling a gather of a few microseconds per
        # batch costs it little.
        rec = self.recorder
        t0 = _clock()
        if rec.start is None:
            rec.start = t0
            rec.cpu_start = time.process_time()
        try:
            batch = self._next_inner()
        except BaseException:
            t1 = _clock()
            rec.in_next += t1 - t0
            rec.last = t1
            rec.cpu_last = time.process_time()
            self._ended = True
            raise
        t1 = _clock()
        rec.in_next += t1 - t0
        rec.last = t1
        if rec.batches:
            rec.batches += 1
        else:
            rec.batches = 1
            rec.first_next = t1 - t0
        return batch

    def stats(self) -> StallReport:
        """Return the stall report of the batches taken so far.

        Returns
        -------
        StallReport
            A snapshot: later batches do not change it.
        """
        rec = self.recorder
        if not self._ended:
            rec.cpu_last = time.process_time()
        return StallReport(summary(rec))

    # -- the wrapped iterator's state, unchanged ---------------------------------------------
    def state_dict(self) -> dict:
        return self._inner_state()

    def load_state_dict(self, state: Any) -> None:
        self._load_inner_state(state)

    def close(self) -> None:
        """Close the wrapped iterator if it can be closed."""
        fn = getattr(self._inner, "close", None)
        if fn is not None:
            fn()

    def __enter__(self) -> ProfiledIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("_inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)


class _DirectProfiledIterator(ProfiledIterator):
    """A :class:`ProfiledIterator` right on top of the pipeline's own iterator.

    That iterator times map functions around its own fetches, so ``next()``
    is only the timing, without swapping the thread's map timer.
    """

    __next__ = ProfiledIterator._timed_next


class StallReport:
    """Where the time of a profiled iteration went, and what bounds it.

    ``str(report)`` is a small table followed by the verdict;
    :meth:`as_dict` holds the same figures. :attr:`bound` names the stage
    that limits throughput: ``'consumer'``, ``'plan'``, ``'fetch'``,
    ``'map'``, ``'transfer'``, ``'dispatch'``, ``'adapter'``,
    ``'calibration'``, ``'startup'`` (waiting for the first batch),
    ``'latency'`` (workers idle while the consumer waits), ``'pipeline'``
    (an iterator batchup cannot look into) or ``None`` before the first
    batch; :attr:`where` says whose time it is (``'consumer'`` thread or
    ``'workers'``).

    Parameters
    ----------
    summary : dict
        The figures, as made by :meth:`ProfiledIterator.stats`; users get
        reports from there rather than constructing them.
    """

    def __init__(self, summary: dict) -> None:
        self._d = summary

    @property
    def bound(self) -> str | None:
        """The stage that bounds throughput (see the class documentation), or None before any batch."""
        return self._d["bound"]

    @property
    def where(self) -> str | None:
        """Whose time the bounding stage is: ``'consumer'`` (the consumer's thread) or ``'workers'``."""
        return self._d["where"]

    @property
    def verdict(self) -> str:
        """One paragraph: how long the consumer waited, the bounding stage, and what would help."""
        return self._d["verdict"]

    def as_dict(self) -> dict:
        """Return the report as a JSON-serialisable dict.

        Returns
        -------
        dict
            A copy of the figures the table and the verdict are made from.
        """
        import copy

        return copy.deepcopy(self._d)

    def __repr__(self) -> str:
        return f"<StallReport: {self._d['batches']} batches, bound={self.bound!r}>"

    def __str__(self) -> str:
        return table(self._d)
