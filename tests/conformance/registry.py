"""The machinery of the conformance suite: the registry, the shared environment and the designs.

``cases.py`` fills the registry (and documents the suite); this module holds
what the entries are (:class:`Source`, :class:`Sampler`, :class:`Shard`,
:class:`Driver`), the ``register_*`` functions, refusals and known bugs,
the :class:`Env` that cases share, and the designs built from the registry:
the all-pairs :func:`driver_cases` and the full-product :func:`count_cases`.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import re
from typing import Any, Callable

import numpy as np

__all__ = [
    "DRIVERS", "FACTORS", "SAMPLERS", "SHARDS", "SOURCES", "Case", "Combo", "CountCase", "Driver", "Env",
    "EpochRun", "Sampler", "Shard", "Source", "Space", "available", "check_message", "count_cases",
    "describe", "design_refusal", "driver_cases", "known_bug", "pairwise", "register_driver",
    "register_known_bug", "register_refusal", "register_sampler", "register_shard", "register_source",
]

#: The sample count of every source's sampled member (``Space``'s default).
N = 22

@dataclasses.dataclass(frozen=True)
class Space:
    """What a sampler is built for: ``length`` samples (or the ``subset`` of them), ``repeats`` epochs a run."""

    length: int = N
    subset: np.ndarray | None = None
    repeats: int = 1


@dataclasses.dataclass(frozen=True)
class Sampler:
    """A sampler entry.

    ``make(space)`` returns a sampler, or ``None`` for the source's standard
    sampler; ``shuffle()`` returns a fresh ``shuffle`` argument (RNG objects
    in the same state on every call).
    """

    name: str
    make: Callable[[Space], Any]
    shuffle: Callable[[], Any]
    #: Samples per batch; ``None`` for samplers that size their batches (no size checks then).
    batch_size: int | None = 5
    endless: bool = False
    #: Sharding deals out whole batches (the plan's items are batches).
    whole_batches: bool = False
    #: ``shuffle`` is an RNG object: plans are walked in order, ranks cannot agree.
    rng_object: bool = False
    #: The sampler draws its own seed when built (no ``seed=``): ranks cannot agree.
    drawn_seed: bool = False
    #: In-order iteration is impossible (weighted samplers without ``shuffle``).
    needs_shuffle: bool = False
    #: A weighted sampler (its order needs ``shuffle``, its count does not).
    weighted: bool = False
    #: Sample ids that must never be drawn (zero weights).
    never: frozenset = frozenset()
    #: Sharding deals out steps of its own (a batch per rank from one bucket), not a flat layout:
    #: coverage checks that ranks are disjoint (and complete with ``pad``), not where each sample went.
    deals_steps: bool = False


@dataclasses.dataclass(frozen=True)
class Source:
    """A source entry.

    ``build(env, sampler)`` returns a fresh data source. ``ids(batch)`` and
    ``mask(padding)`` pick the sample ids of the sampled member and that
    member's padding mask. Flags describe what the checks may expect.
    """

    name: str
    build: Callable[[Env, Sampler], Any]
    ids: Callable[[Any], np.ndarray] = lambda batch: batch[1]
    mask: Callable[[Any], Any] = lambda padding: padding
    #: Which samplers it can be built with.
    accepts: Callable[[Sampler], bool] = lambda smp: True
    #: The run ends with a finite member even if the sampled member is endless.
    bounded: bool = False
    #: A member repeats forever whatever the sampler is.
    endless_member: bool = False
    #: ``exact_samples(sampler)``: ``num_samples`` is the number of samples yielded (not only a bound).
    exact_samples: Callable[[Sampler], bool] = lambda smp: True
    #: ``count_varies(sampler)``: the number of batches depends on the order (choice rounds), so it
    #: varies between epochs and seeds.
    count_varies: Callable[[Sampler], bool] = lambda smp: False
    #: The ids of every rank are the documented part of the unsharded order.
    coverage: bool = True
    #: Only the last batch of a run may be short.
    short_only_last: bool = True
    #: Making some batch raises: every driver delivers the batches before it, then the same error.
    fails: bool = False
    #: Shuffled by an RNG object its number of batches is unknown (drawn while it is walked).
    unknown_count_with_rng: bool = False
    #: Epochs a run of the sampled member (``repeats=``).
    repeats: int = 1


@dataclasses.dataclass(frozen=True)
class Shard:
    """A shard entry: ``make(rank)`` gives rank ``rank``'s ``shard=`` argument."""

    name: str
    num_shards: int
    make: Callable[[int], Any]

    def ranks(self) -> list:
        return [self.make(r) for r in range(self.num_shards)]


@dataclasses.dataclass
class EpochRun:
    """What an epoch-walking driver (an adapter) produced, filled in as it goes.

    ``epochs`` holds one list of batches per epoch asked for, or (``flat``)
    a single list covering them all; ``lengths`` the driver's ``len()`` per
    epoch (``None`` where it has none); ``seed`` the int seed the adapter
    picked (``...`` when it does not say). Filled in batch by batch, so the
    batches that came before an error are kept.
    """

    epochs: list = dataclasses.field(default_factory=list)
    lengths: list = dataclasses.field(default_factory=list)
    seed: Any = ...
    flat: bool = False

    def start_epoch(self, length: Any) -> list:
        """Begin the next epoch (with the driver's ``len()`` for it); return its list of batches."""
        self.lengths.append(length)
        self.epochs.append([])
        return self.epochs[-1]


@dataclasses.dataclass(frozen=True)
class Driver:
    """A driver entry.

    ``kind == "iterator"``: ``open(env, ds)`` returns ``make(bs, shuffle,
    **options)`` that returns an iterator over one epoch (like
    ``batch_iterator``). ``kind == "epochs"``: ``open(env, ds)`` returns
    ``run(bs, shuffle, drop_last, shard, epochs, limit, out)`` that fills
    the :class:`EpochRun` ``out``.
    """

    name: str
    kind: str
    open: Callable[..., Callable]
    #: Turns ``shuffle`` into one int seed when built (the seed rule).
    adapter: bool = False
    #: Walks several epochs in one object (so epoch ``e + 1`` is checked too).
    walks_epochs: bool = False
    #: Only epochs 0, 1, ... (no ``epoch=`` to start at).
    from_epoch_zero: bool = False
    #: ``state -> core state`` and back, for states that nest the core's; None: no states.
    to_core_state: Callable | None = None
    from_core_state: Callable | None = None
    #: ``refuses(source, sampler, shard) -> (exception, regex) or None``: refusals of this driver only.
    refuses: Callable | None = None
    #: Map the reference's batch to what the driver can give (JAX's 32-bit default).
    expect: Callable | None = None
    #: Needs these modules (skipped without them).
    needs: tuple = ()
    #: ``same_error(core_error, error) -> bool``: the driver's error is the core's (None: the same
    #: type, its message containing the core's).
    same_error: Callable | None = None


SOURCES: dict = {}
SAMPLERS: dict = {}
SHARDS: dict = {}
DRIVERS: dict = {}
# Keyed like the other registries, so registering again (pytest's doctest collection imports
# cases.py a second time, as the module "cases") replaces an entry instead of adding a twin.
_REFUSALS: dict = {}
_KNOWN_BUGS: dict = {}


def register_source(name: str, build: Callable, **flags: Any) -> Source:
    """Add a source; ``build(env, sampler)`` returns a fresh data source (see :class:`Source`)."""
    SOURCES[name] = entry = Source(name, build, **flags)
    return entry


def register_sampler(name: str, make: Callable, shuffle: Callable = lambda: None, **flags: Any) -> Sampler:
    """Add a sampler; ``make(space)`` returns a sampler or ``None`` (see :class:`Sampler`)."""
    SAMPLERS[name] = entry = Sampler(name, make, shuffle, **flags)
    return entry


def register_shard(name: str, num_shards: int, make: Callable) -> Shard:
    """Add a sharding; ``make(rank)`` returns the ``shard=`` argument of that rank."""
    SHARDS[name] = entry = Shard(name, num_shards, make)
    return entry


def register_driver(name: str, kind: str, open: Callable, **flags: Any) -> Driver:  # noqa: A002
    """Add a driver (see :class:`Driver`); drivers run in registration order."""
    DRIVERS[name] = entry = Driver(name, kind, open, **flags)
    return entry


def register_refusal(when: Callable, error: type, match: str) -> None:
    """Declare that the core (and so every driver) refuses a combination by design.

    ``when(source, sampler, shard, epoch)`` says whether it applies; the
    refusal must be ``error`` with a message matching ``match``.
    """
    _REFUSALS[(error, match)] = when


@dataclasses.dataclass(frozen=True)
class Combo:
    """One combination as the known-bug predicates see it (``driver`` is None outside the driver test)."""

    source: Source
    sampler: Sampler
    shard: Shard
    driver: Driver | None
    epoch: int
    drop_last: bool

    def refused(self) -> bool:
        """Whether the core refuses it by design (at the first epoch the driver asks for)."""
        first = 0 if self.driver is not None and self.driver.from_epoch_zero else self.epoch
        return design_refusal(self.source, self.sampler, self.shard, first) is not None


def register_known_bug(when: Callable, reason: str, *, checks: tuple = ("driver", "counts")) -> None:
    """Declare a library bug: ``when(combo)`` (a :class:`Combo`); its cases are strict xfails.

    ``checks`` names the tests it breaks: ``"driver"`` (driver against core),
    ``"counts"`` (core counts and shards), ``"steps"`` (``steps_per_epoch``),
    ``"lengths"`` (adapters' ``len()`` over two epochs).
    """
    _KNOWN_BUGS[reason] = (when, tuple(checks))


def design_refusal(src: Source, smp: Sampler, shard: Shard, epoch: int) -> tuple | None:
    """Return ``(error, regex)`` if the core refuses this combination by design, else None."""
    for (error, match), when in _REFUSALS.items():
        if when(src, smp, shard, epoch):
            return error, match
    return None


def known_bug(check: str, combo: Combo) -> str | None:
    """Return the reason of the known bug that breaks ``check`` for this combination, or None."""
    for reason, (when, checks) in _KNOWN_BUGS.items():
        if check in checks and when(combo):
            return reason
    return None


# -- environment shared by the cases of a module ----------------------------------------------

class Env:
    """Files and pools shared by the cases of a test module.

    ``resource(name, make)`` creates a shared object (a worker pool) on
    first use, ``folder(name, fill)`` a folder of files; :meth:`close`
    closes the resources in reverse order.
    """

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = pathlib.Path(workdir)
        self._resources: dict = {}
        self._closers: list = []
        self._folders: set = set()
        #: Closed after every case (ParallelDataSources, iterators left open).
        self.case_closers: list = []

    def resource(self, name: str, make: Callable, close: Callable | None = None) -> Any:
        if name not in self._resources:
            obj = make()
            self._resources[name] = obj
            self._closers.append(close or obj.close)
        return self._resources[name]

    def folder(self, name: str, fill: Callable[[pathlib.Path], None]) -> pathlib.Path:
        """Return the folder ``workdir / name``, filled by ``fill(folder)`` on first use."""
        path = self.workdir / name
        if name not in self._folders:
            path.mkdir(parents=True, exist_ok=True)
            fill(path)
            self._folders.add(name)
        return path

    def close_case(self) -> None:
        while self.case_closers:
            self.case_closers.pop()()

    def close(self) -> None:
        self.close_case()
        while self._closers:
            self._closers.pop()()
        self._resources.clear()


# -- the designs ------------------------------------------------------------------------------

FACTORS = ("source", "sampler", "shard", "driver", "drop_last", "epoch")


def _values() -> dict:
    return {
        "source": list(SOURCES), "sampler": list(SAMPLERS), "shard": list(SHARDS),
        "driver": list(DRIVERS), "drop_last": [False, True], "epoch": [0, 1],
    }


def _allowed(assignment: dict) -> bool:
    if "source" in assignment and "sampler" in assignment:
        return SOURCES[assignment["source"]].accepts(SAMPLERS[assignment["sampler"]])
    return True


def pairwise(values: dict, allowed: Callable[[dict], bool] = lambda a: True) -> list:
    """Return an all-pairs covering design: a list of dicts, one value per factor.

    Greedy and deterministic: start each case from the first uncovered pair
    (in factor and value order), then give every other factor the value
    that covers the most uncovered pairs (the first such value on a tie).

    Examples
    --------
    >>> cases = pairwise({"a": [0, 1], "b": [0, 1], "c": [0, 1]})
    >>> len(cases)
    4
    >>> pairs = {(f, c[f], g, c[g]) for c in cases for f in "abc" for g in "abc" if f < g}
    >>> len(pairs)
    12
    """
    names = list(values)
    index = {f: {v: i for i, v in enumerate(vs)} for f, vs in values.items()}

    def pairs_of(case: dict) -> set:
        return {(f, case[f], g, case[g]) for i, f in enumerate(names) for g in names[i + 1:] if f in case and g in case}

    uncovered = {
        (f, a, g, b)
        for i, f in enumerate(names) for g in names[i + 1:]
        for a in values[f] for b in values[g] if allowed({f: a, g: b})
    }

    def order(p: tuple) -> tuple:
        f, a, g, b = p
        return (names.index(f), names.index(g), index[f][a], index[g][b])

    cases = []
    while uncovered:
        f, a, g, b = min(uncovered, key=order)
        case = {f: a, g: b}
        for h in names:
            if h in case:
                continue
            best, best_gain = None, -1
            for v in values[h]:
                trial = dict(case, **{h: v})
                if not allowed(trial):
                    continue
                gain = sum(1 for k in case if _pair(names, h, v, k, case[k]) in uncovered)
                if gain > best_gain:
                    best, best_gain = v, gain
            if best is None:
                raise ValueError(f"no allowed value of {h!r} fits {case!r}")
            case[h] = best
        cases.append({h: case[h] for h in names})
        uncovered -= pairs_of(case)
    return cases


def _pair(names: list, f: str, a: Any, g: str, b: Any) -> tuple:
    return (f, a, g, b) if names.index(f) < names.index(g) else (g, b, f, a)


@dataclasses.dataclass(frozen=True)
class Case:
    """One generated driver case."""

    source: str
    sampler: str
    shard: str
    driver: str
    drop_last: bool
    epoch: int

    @property
    def id(self) -> str:
        return f"{self.source}-{self.sampler}-{self.shard}-{self.driver}-dl{int(self.drop_last)}-e{self.epoch}"

    def entries(self) -> tuple:
        return SOURCES[self.source], SAMPLERS[self.sampler], SHARDS[self.shard], DRIVERS[self.driver]


@dataclasses.dataclass(frozen=True)
class CountCase:
    """One serial-core case of the full source x sampler x shard product."""

    source: str
    sampler: str
    shard: str
    drop_last: bool
    epoch: int

    @property
    def id(self) -> str:
        return f"{self.source}-{self.sampler}-{self.shard}-dl{int(self.drop_last)}-e{self.epoch}"


def driver_cases() -> list:
    """Return the pairwise design over all six factors, grouped by driver in registration order."""
    drivers = list(DRIVERS)
    cases = [Case(**c) for c in pairwise(_values(), _allowed)]
    return sorted(cases, key=lambda c: drivers.index(c.driver))


def count_cases() -> list:
    """Return every allowed (source, sampler, shard), with ``drop_last`` and ``epoch`` taking turns.

    Sources that fail on purpose (``fails=True``) are left out: they have nothing to count.
    """
    out = []
    for i, s in enumerate(SOURCES):
        for j, m in enumerate(SAMPLERS):
            for k, h in enumerate(SHARDS):
                if SOURCES[s].accepts(SAMPLERS[m]) and not SOURCES[s].fails:
                    # Any two of source, sampler and shard meet all four (drop_last, epoch) options.
                    drop_last, epoch = divmod((i + j + k) % 4, 2)
                    out.append(CountCase(s, m, h, drop_last=bool(drop_last), epoch=epoch))
    return out


def describe() -> str:
    """Return a summary of the designs (``python -m tests.conformance.cases``)."""
    cases = driver_cases()
    per_driver = {d: sum(c.driver == d for c in cases) for d in DRIVERS}
    lines = [
        f"driver cases (pairwise): {len(cases)}; count cases (full product): {len(count_cases())}",
        "per driver: " + ", ".join(f"{d}={n}" for d, n in per_driver.items()),
    ]
    return "\n".join(lines)


def check_message(err: BaseException, match: str | None = None) -> None:
    """Assert that ``err`` is a clear error: the right family, a message, matching ``match``."""
    assert isinstance(err, (TypeError, ValueError, NotImplementedError)), f"unclear error {type(err).__name__}: {err}"
    text = str(err)
    assert len(text) > 15, f"{type(err).__name__} without a useful message: {text!r}"
    if match is not None:
        assert re.search(match, text), f"{type(err).__name__} message {text!r} does not match {match!r}"


def available(modules: tuple) -> bool:
    """Whether every module in ``modules`` can be imported (without importing it)."""
    return all(importlib.util.find_spec(m) is not None for m in modules)
