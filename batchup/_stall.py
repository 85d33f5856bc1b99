"""The stall report's figures, verdict and table, computed from a :class:`~batchup._profile.Recorder`.

:func:`summary` turns what a profiled iteration recorded into the dict that
:meth:`batchup.profiling.StallReport.as_dict` returns: the stages (seconds,
share of the wall time, whose time), the workers and the queue, and the
verdict: the stage that bounds throughput and what would help, by the rules
below. :func:`table` renders that dict as text.
"""
from __future__ import annotations

from batchup._profile import Recorder, cpu_count

__all__ = ["summary", "table"]

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


# -- the summary ---------------------------------------------------------------------------------


def summary(rec: Recorder) -> dict:
    n = rec.batches
    wall = (rec.last - rec.start) if rec.start is not None and rec.last is not None else 0.0
    desc = rec.describe() if rec.describe is not None else {"kind": "opaque"}
    kind = desc["kind"]
    in_next = rec.in_next
    own = max(0.0, wall - in_next)
    outside_maps = max(0.0, rec.maps[0] - rec.node_map)
    workers = int(desc.get("workers", 0) or 0)
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
        node = in_next if rec.direct else rec.node
        add("adapter", max(0.0, in_next - node - outside_maps), "consumer")
        add("other", max(0.0, node - listed), "consumer")
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
        choice = r["pipeline"].get("choice")
        if choice and choice.get("kind") == "inline":
            advice = (f"num_workers='auto' found no pool faster than this thread (see the choice), so cheaper "
                      f"{what} would help")
        else:
            advice = (f"prefetching in workers would help (ds.prefetch(num_workers='auto'); this machine has "
                      f"{cpus} CPUs), as would cheaper {what}")
        return top, "consumer", f"{head}; {what} took {share:.0%} of the time, in the consumer's thread: {advice}."
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


def table(r: dict) -> str:
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
