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

Profiling adds about a microsecond per batch. When nothing is profiled, the
pipeline does no timing at all.
"""
from __future__ import annotations

import time
from typing import Any

from batchup._iterator import WrappingIterator
from batchup._profile import LOCAL, Recorder, cpu_count

__all__ = ["ProfiledIterator", "StallReport", "profile"]

_clock = time.perf_counter

#: Below this share of the time spent waiting in ``next()``, the consumer bounds throughput.
CONSUMER_BOUND = 0.15
#: Workers busy at least this share of the time are the limit (else they wait for work).
BUSY = 0.8
#: A thread pool whose process used fewer CPUs than this mostly waits (files, network): more threads help.
WAITING_CORES = 0.6
#: ... and fewer than this (but more than the above) with two threads or more: they queue for the GIL.
GIL_CORES = 1.3

_LABELS = {
    "consumer": "consumer's own work",
    "in_next": "waiting in next()",
    "plan": "planning indices",
    "fetch": "fetching / gathering",
    "map": "map functions",
    "wait": "waiting for workers",
    "transfer": "transfer",
    "dispatch": "dispatching tasks",
    "calibration": "calibration (auto)",
    "adapter": "adapter / wrappers",
    "pipeline": "the iterator (not broken down)",
    "other": "other",
}


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
    """

    def __init__(self, iterator: Any) -> None:
        super().__init__(iter(iterator))
        self.recorder = Recorder()
        _attach(self._inner, self.recorder)
        self._ended = False

    def __next__(self) -> Any:
        rec = self.recorder
        local = LOCAL
        outer = local.maps
        local.maps = rec.maps  # map functions run in this thread are timed
        clock = _clock
        t0 = clock()
        if rec.start is None:
            rec.start = t0
            rec.cpu_start = time.process_time()
        try:
            batch = next(self._inner)
        except BaseException:
            t1 = clock()
            local.maps = outer
            rec.in_next += t1 - t0
            rec.last = t1
            rec.cpu_last = time.process_time()
            self._ended = True
            raise
        t1 = clock()
        local.maps = outer
        rec.in_next += t1 - t0
        rec.last = t1
        rec.batches += 1
        if rec.batches == 1:
            rec.first_next = t1 - t0
        return batch

    def stats(self) -> StallReport:
        """Return the stall report of the batches taken so far."""
        rec = self.recorder
        if not self._ended:
            rec.cpu_last = time.process_time()
        return StallReport(_summary(rec))

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
        """Return the report as a JSON-serialisable dict (a copy)."""
        import copy

        return copy.deepcopy(self._d)

    def __repr__(self) -> str:
        return f"<StallReport: {self._d['batches']} batches, bound={self.bound!r}>"

    def __str__(self) -> str:
        return _table(self._d)


# -- the summary ---------------------------------------------------------------------------------


def _summary(rec: Recorder) -> dict:
    n = rec.batches
    wall = (rec.last - rec.start) if rec.start is not None and rec.last is not None else 0.0
    desc = rec.describe() if rec.describe is not None else {"kind": "opaque"}
    kind = desc["kind"]
    in_next = rec.in_next
    own = max(0.0, wall - in_next)
    outside_maps = max(0.0, rec.maps[0] - rec.node_map)
    workers = desc.get("workers", 0) or 0
    inline_pool = kind == "prefetch" and workers == 0
    stages: dict = {}

    def add(name: str, seconds: float, where: str) -> None:
        stages[name] = {"seconds": seconds, "share": seconds / wall if wall > 0 else 0.0, "where": where}

    add("consumer", own, "consumer")
    add("in_next", in_next, "consumer")
    if kind == "opaque":
        add("map", outside_maps, "consumer")
        add("pipeline", max(0.0, in_next - outside_maps), "consumer")
    else:
        add("plan", rec.plan, "consumer")
        if kind == "serial":
            add("fetch", max(0.0, rec.fetch - rec.node_map), "consumer")
            add("map", rec.node_map + outside_maps, "consumer")
            listed = rec.plan + rec.fetch
        else:
            if inline_pool:  # the tasks ran in the consumer's thread
                add("fetch", max(0.0, rec.w_seconds - rec.w_map), "consumer")
                add("map", rec.w_map + outside_maps, "consumer")
                listed = rec.w_seconds
            else:
                if outside_maps > 0:
                    add("map", outside_maps, "consumer")
                listed = 0.0
            add("wait", rec.wait, "consumer")
            add("transfer", rec.decode, "consumer")
            add("dispatch", rec.dispatch, "consumer")
            if rec.calibration:
                add("calibration", rec.calibration, "consumer")
            listed += rec.plan + rec.wait + rec.decode + rec.dispatch + rec.calibration
        add("adapter", max(0.0, in_next - rec.node - outside_maps), "consumer")
        add("other", max(0.0, rec.node - listed), "consumer")
    report: dict = {
        "batches": n,
        "wall_seconds": wall,
        "batches_per_second": n / wall if wall > 0 else None,
        "first_batch_seconds": rec.first_next,
        "pipeline": desc,
        "stages": stages,
        "workers": None,
        "queue": None,
        "cpus": cpu_count(),
        "process_cpu_seconds": max(0.0, rec.cpu_last - rec.cpu_start),
    }
    if kind == "prefetch":
        calls = rec.q_calls
        report["queue"] = {
            "buffer": desc.get("buffer"),
            "mean_ready": rec.q_ready / calls if calls else None,
            "mean_in_flight": rec.q_flight / calls if calls else None,
            "not_ready_share": rec.q_empty / calls if calls else None,
        }
    if kind == "prefetch" and workers:
        busy = rec.w_seconds + rec.w_encode
        scale = n / rec.w_batches if rec.w_batches else 0.0
        span = max(0.0, wall - rec.calibration)
        report["workers"] = {
            "kind": desc.get("pool"),
            "count": workers,
            "timed_batches": rec.w_batches,
            "busy_seconds": busy,
            "utilisation": (busy * scale / (workers * span)) if span > 0 and rec.w_batches else None,
            "stages": {
                "fetch": {"seconds": max(0.0, rec.w_seconds - rec.w_map), "share": _part(rec.w_seconds - rec.w_map, busy)},
                "map": {"seconds": rec.w_map, "share": _part(rec.w_map, busy)},
                "transfer": {"seconds": rec.w_encode, "share": _part(rec.w_encode, busy)},
            },
            "seen": len(rec.w_by),
        }
    report["bound"], report["where"], report["verdict"] = _verdict(report)
    return report


def _part(x: float, total: float) -> float:
    return max(0.0, x) / total if total > 0 else 0.0


# -- the verdict ---------------------------------------------------------------------------------

_ADVICE = {
    "plan": "planning indices (the sampler) is the slow part: larger batches mean fewer plans",
    "transfer": ("moving batches from the worker processes is the slow part: threads avoid it when fetching "
                 "releases the GIL, and smaller dtypes shrink it"),
    "dispatch": "handing tasks to the workers is the slow part: larger batches mean fewer tasks",
    "adapter": "the adapter's own work (conversion to tensors, device transfer) is the slow part",
    "other": "batchup's own bookkeeping is the slow part: larger batches mean less of it",
    "pipeline": ("this iterator is not a batchup pipeline, so its stages are unknown; profile "
                 "ds.batch_iterator(...) or a prefetching iterator for a breakdown"),
}


def _verdict(r: dict) -> tuple:
    n, wall = r["batches"], r["wall_seconds"]
    if not n or wall <= 0:
        return None, None, "No batch has been taken yet."
    st = r["stages"]
    waited = st["in_next"]["share"]
    cpus = r["cpus"]
    head = f"The consumer waited {waited:.0%} of the time in next() and worked {st['consumer']['share']:.0%}"
    w = r["workers"]
    if waited < CONSUMER_BOUND:
        text = f"{head}: the consumer bounds throughput; a faster loader would not help."
        if w and w["utilisation"] is not None and w["utilisation"] < 0.5:
            text += f" The {w['count']} workers were busy only {w['utilisation']:.0%} of the time: fewer would do."
        return "consumer", "consumer", text
    inner = {k: v["seconds"] for k, v in st.items() if k not in ("consumer", "in_next")}
    top = max(inner, key=lambda k: inner[k])
    share = inner[top] / wall
    if top == "wait":
        return _workers_verdict(r, head)
    if top == "calibration":
        return "calibration", "consumer", (
            f"{head}; choosing the workers (num_workers='auto') took {share:.0%} of this run. It happens once "
            "per source: a longer run amortises it.")
    if top in ("fetch", "map"):
        what = _LABELS[top]
        return top, "consumer", (
            f"{head}; {what} took {share:.0%} of the time, in the consumer's thread: prefetching in workers "
            f"would help (ds.prefetch(num_workers='auto'); this machine has {cpus} CPUs), as would cheaper "
            f"{what}.")
    return top, "consumer", f"{head}; {_LABELS[top]} took {share:.0%} of the time: {_ADVICE[top]}."


def _workers_verdict(r: dict, head: str) -> tuple:
    st, w, cpus = r["stages"], r["workers"], r["cpus"]
    wait = st["wait"]["seconds"]
    if r["first_batch_seconds"] > 0.5 * wait:
        return "startup", "consumer", (
            f"{head}; most of the waiting ({r['first_batch_seconds']:.2f} s) was for the first batch, while the "
            "workers started: a longer run amortises it.")
    if not w or not w["timed_batches"]:
        return "latency", "workers", (
            f"{head}, mostly waiting for the workers, but no batch came back with worker timings; profile "
            "the iterator before taking batches.")
    stage = max(w["stages"], key=lambda k: w["stages"][k]["seconds"])
    what = _LABELS[stage] if stage != "transfer" else "writing batches to shared memory"
    u, count, kind = w["utilisation"], w["count"], w["kind"]
    if u is None or u < BUSY:
        buffer = (r["queue"] or {}).get("buffer")
        return "latency", "workers", (
            f"{head}, mostly waiting for the workers, yet the {count} workers were busy only "
            f"{0 if u is None else u:.0%} of the time: batches were asked for faster than they were queued; "
            f"a larger buffer_size (now {buffer}) may help.")
    text = (f"{head}, mostly waiting for the workers; {what} take {w['stages'][stage]['share']:.0%} of worker "
            f"time, and {count} {kind} workers were busy {min(u, 1.0):.0%} of the time: ")
    cores = r["process_cpu_seconds"] / r["wall_seconds"]
    if kind == "thread" and cores < WAITING_CORES:
        text += (f"the process used only {cores:.1f} of the {cpus} CPUs, so the work mostly waits (for files, "
                 "the network, a sleep): more threads would help.")
    elif kind == "thread" and cpus >= 2 and count >= 2 and cores < GIL_CORES:
        text += (f"the process used only {cores:.1f} of the {cpus} CPUs, so the threads seem to share one through "
                 f"the GIL: if the {what} are Python code, kind='process' would help.")
    elif count < cpus:
        text += f"more workers (this machine has {cpus} CPUs) or cheaper {what} would help."
    else:
        text += f"they already match the {cpus} CPUs of this machine: cheaper {what} would help."
    return stage, "workers", text


# -- the table ------------------------------------------------------------------------------------


def _table(r: dict) -> str:
    n, wall = r["batches"], r["wall_seconds"]
    p = r["pipeline"]
    if p["kind"] == "prefetch":
        what = f"prefetching, {p['pool']} pool" + (f" of {p['workers']}" if p["workers"] else "")
        what += f", buffer {p['buffer']}"
    else:
        what = {"serial": "serial", "opaque": "not a batchup pipeline"}.get(p["kind"], p["kind"])
    rate = f", {r['batches_per_second']:.1f} batches/s" if r["batches_per_second"] else ""
    lines = [f"stall report: {n} batches in {wall:.3f} s{rate} ({what})"]
    lines.append(f"  {'stage':<32} {'where':<9} {'seconds':>9} {'share':>6}")
    order = ["consumer", "in_next", "plan", "fetch", "map", "wait", "transfer", "dispatch", "calibration",
             "adapter", "pipeline", "other"]
    for name in order:
        s = r["stages"].get(name)
        if s is None or name in ("adapter", "other") and s["share"] < 0.005:
            continue
        indent = "" if name in ("consumer", "in_next") else "  "
        lines.append(f"  {indent + _LABELS[name]:<32} {s['where']:<9} {s['seconds']:>9.3f} {s['share']:>6.0%}")
    w = r["workers"]
    if w:
        u = "n/a" if w["utilisation"] is None else f"{min(w['utilisation'], 1.0):.0%}"
        lines.append(f"  workers: {w['count']} {w['kind']}, busy {u} of the time "
                     f"({w['timed_batches']} of {n} batches timed; shares of worker time)")
        for name, s in w["stages"].items():
            lines.append(f"    {_LABELS[name]:<30} {'workers':<9} {s['seconds']:>9.3f} {s['share']:>6.0%}")
    q = r["queue"]
    if q and q["mean_ready"] is not None:
        lines.append(f"  queue: buffer {q['buffer']}; at next() on average {q['mean_ready']:.1f} ready, "
                     f"{q['mean_in_flight']:.1f} in flight; not ready at {q['not_ready_share']:.0%} of calls")
    choice = p.get("choice")
    if choice:
        lines.append(f"  choice (auto): {choice['kind']}, {choice['num_workers']} workers, buffer "
                     f"{choice['buffer_size']}: {choice['reason']}")
    lines.append(f"verdict: {r['verdict']}")
    return "\n".join(lines)
