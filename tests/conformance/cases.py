"""The conformance registry: sources, samplers, shards and drivers, and the cases made from them.

batchup promises that a pipeline gives the same batches whichever way it is
driven (see the guide page "How batches are planned"). This module lists
what the conformance suite combines; ``test_conformance.py`` checks the
promise on the combinations.

The four factors
----------------
* **Sources** (:data:`SOURCES`) build a data source over tiny data, given a
  sampler entry (see :func:`register_source`): arrays, a subset, composites
  (nested, with an endless member, with a seeded-map member), choice (plain
  and stratified), a seeded map, ``repeats=2``, ``include_indices``, a
  DataFrame, a record inventory, a ``FileArray``, an ``np.memmap``, and a map
  that fails on one sample (errors in order). Every source carries a sample
  id (0..21) in its batches, so the checks can tell which samples a batch
  holds whatever the batch looks like (tuple, nested tuple, DataFrame
  structure, augmented by a seeded ``map``).
* **Samplers** (:data:`SAMPLERS`): a sampler builder plus the ``shuffle``
  argument that goes with it (in order; int seed; ``Generator``;
  ``RandomState``; weighted finite with and without replacement, endless and
  in order; balanced with its own seed and with a drawn one). See
  :func:`register_sampler`.
* **Shards** (:data:`SHARDS`): no sharding, ``ShardSpec(r, 3, "pad")``,
  ``ShardSpec(r, 3, "drop")`` and ``ShardSpec(r, 2, "drop", "contiguous")``;
  a sharded case runs every rank. See :func:`register_shard`.
* **Drivers** (:data:`DRIVERS`): the serial core, ``prefetch(0)``, threads,
  processes, the joblib pool, Keras ``as_py_dataset`` and ``as_generator``,
  torch ``DataLoader`` with 0 and 2 workers (and 2 persistent ones), torch
  ``iter_tensors`` over the core iterator, tf.data ``as_tf_dataset`` (its
  cases skip without TensorFlow; CI's TensorFlow venv runs them with
  ``-k tf_data``) and JAX ``prefetch_to_device``. See :func:`register_driver`.

Two more factors ride along: ``drop_last`` (False/True) and ``epoch`` (0/1).

The reference and the seed rule
-------------------------------
The serial core, ``ds.batch_iterator(bs, shuffle=s, drop_last=..., shard=...,
epoch=e)``, is the reference. Iterator drivers (pools, JAX) take the same
``shuffle`` value as the core (RNG objects are built fresh, in the same
state, for every run). **Adapters** (Keras, torch, tf.data) turn
``shuffle`` into one int seed when they are built: ``None`` stays in order,
an int is kept, a ``Generator`` or ``RandomState`` is drawn from once
(``batchup.adapters._common.resolve_seed``). An adapter is compared with the
core run on *that* int seed, and epoch ``e`` of the adapter with the core's
``epoch=e``. Where the core refuses the case's own ``shuffle`` (an RNG
object with several ranks), the adapter must refuse too: turning a
``RandomState`` into a seed does not make ranks agree.

Refusals and known bugs
-----------------------
Combinations that cannot work by design are listed with
:func:`register_refusal` (every driver must raise that error, with that
message) or as a driver's own ``refuses`` (only that driver must raise).
Any other error is a failure. Combinations that currently fail because of a
library bug are listed with :func:`register_known_bug` (a predicate over a
:class:`Combo`); their cases are strict expected failures, so fixing the bug
makes them fail ("remove the entry"). ``test_conformance_findings.py`` holds
the smallest reproduction of each.

The design
----------
The full product is too big, so :func:`driver_cases` is an all-pairs
covering design over (source, sampler, shard, driver, drop_last, epoch),
built greedily in a fixed order: every pair of values of two factors meets
in at least one case, and the cases are the same on every run.
:func:`count_cases` covers the full source x sampler x shard product (with
``drop_last`` and ``epoch`` dealt so that any two of the three factors meet
all four options) without running drivers, which is cheap: the core's
counts, lengths and shard coverage, ``steps_per_epoch``, and the adapters'
``len()`` over two epochs.

Adding to the suite
-------------------
A later feature joins by registering its values, for example a bucketing
sampler::

    register_sampler("bucket", lambda space: BucketSampler(LENGTHS[: space.length], ...),
                     shuffle=lambda: 7, batch_size=None)

or a source::

    register_source("ragged", lambda env, smp: ArrayDataSource([RaggedArray(...), IDS], **sampler_kwargs(smp)))

The pairwise design is recomputed from the registry, so a new value meets
every value of the other factors. Add a :func:`register_refusal` for what it
cannot do by design; run ``python -m tests.conformance.cases`` to print the
design.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import re
from typing import Any, Callable

import numpy as np

from batchup.samplers import BalancedSampler, ShardSpec, WeightedSampler, WeightedSubsetSampler
from batchup.samplers.plan import SeedRequiredError
from batchup.sources import ArrayDataSource, ChoiceDataSource, CompositeDataSource

__all__ = [
    "DRIVERS", "SAMPLERS", "SHARDS", "SOURCES", "Case", "CountCase", "Driver", "EpochRun", "Env", "Sampler",
    "Shard", "Source", "Space", "Combo", "count_cases", "design_refusal", "driver_cases", "known_bug", "pairwise",
    "register_driver", "register_known_bug", "register_refusal", "register_sampler", "register_shard",
    "register_source", "sampler_kwargs",
]

# -- the data: 22 samples, ids 0..21 -------------------------------------------------------

N = 22
IDS = np.arange(N, dtype=np.int64)
X = (np.arange(N * 3, dtype=np.float32).reshape(N, 3) / 4).astype(np.float32)
#: Four classes of 7, 5, 6 and 4 samples, interleaved so that in-order batches mix them.
LABELS = np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 0, 3, 1, 2, 0, 2, 3, 0], dtype=np.int64)
#: One zero weight: sample 5 must never be drawn.
WEIGHTS = 1.0 + (np.arange(N) % 3).astype(float)
WEIGHTS[5] = 0.0
#: 15 samples of positive weight: even a weighted draw without replacement fills a batch on every rank.
SUBSET = np.array([0, 1, 2, 3, 6, 8, 9, 11, 13, 14, 16, 17, 19, 20, 21], dtype=np.int64)
#: A second member, longer than the first, so that it never ends a composite first.
WIDE = np.arange(2 * N, dtype=np.int16)
#: An endless third member of the nested composite (BatchUp 0.2's labelled set).
SMALL = (np.arange(7, dtype=np.int16) + 1000).astype(np.int16)
#: The other member of the choice sources, with ids 100..115 (a full batch on every rank).
X2 = np.full((16, 3), -1.0, dtype=np.float32) * np.arange(16, dtype=np.float32)[:, None]
IDS2 = np.arange(100, 116, dtype=np.int64)
TEXTS = ["t" * (1 + i % 5) for i in range(N)]
ENDLESS_LIMIT = 7


# -- module-level functions (picklable for worker processes) --------------------------------

def jitter(x: np.ndarray, ids: np.ndarray, rng: np.random.Generator) -> tuple:
    """A seeded map's augmentation: noise from the batch's own generator."""
    return (x + rng.normal(size=x.shape).astype(np.float32), ids)


class CorruptSampleError(RuntimeError):
    """What :func:`refuse_corrupt` raises: a failure while a batch is made."""


#: The sample the ``failing_map`` source cannot make.
CORRUPT = 13


def refuse_corrupt(x: np.ndarray, ids: np.ndarray) -> tuple:
    """A map that fails on one sample, as a decoder fails on a corrupt file."""
    if CORRUPT in ids:
        raise CorruptSampleError(f"sample {CORRUPT} is corrupt")
    return (x, ids)


class Halve:
    """A pre-fitted encoder for DataFrameSource (picklable)."""

    def transform(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float32) / 2


class TextLength:
    """A per-record encoder for InventorySource: the length of the text field."""

    def transform(self, record: Any) -> int:
        return len(record["text"])


class RecordId:
    """A per-record target encoder for InventorySource: the sample id."""

    def transform(self, record: Any) -> int:
        return int(record["id"])


# -- the registry ---------------------------------------------------------------------------

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
_REFUSALS: list = []
_KNOWN_BUGS: list = []


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
    _REFUSALS.append((when, error, match))


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
    _KNOWN_BUGS.append((when, reason, tuple(checks)))


def design_refusal(src: Source, smp: Sampler, shard: Shard, epoch: int) -> tuple | None:
    """Return ``(error, regex)`` if the core refuses this combination by design, else None."""
    for when, error, match in _REFUSALS:
        if when(src, smp, shard, epoch):
            return error, match
    return None


def known_bug(check: str, combo: Combo) -> str | None:
    """Return the reason of the known bug that breaks ``check`` for this combination, or None."""
    for when, reason, checks in _KNOWN_BUGS:
        if check in checks and when(combo):
            return reason
    return None


# -- environment shared by the cases of a module ----------------------------------------------

class Env:
    """Files and pools shared by the cases of a test module.

    ``resource(name, make)`` creates a shared object (a worker pool) on
    first use; :meth:`close` closes them all in reverse order.
    """

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = pathlib.Path(workdir)
        self._resources: dict = {}
        self._closers: list = []
        self._files_made = False
        #: Closed after every case (ParallelDataSources, iterators left open).
        self.case_closers: list = []

    def resource(self, name: str, make: Callable, close: Callable | None = None) -> Any:
        if name not in self._resources:
            obj = make()
            self._resources[name] = obj
            self._closers.append(close or obj.close)
        return self._resources[name]

    def files(self) -> pathlib.Path:
        """Return the folder of per-sample ``.npy`` files and the memmap (made once)."""
        folder = self.workdir / "files"
        if not self._files_made:
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(N):
                np.save(folder / f"s{i}.npy", X[i])
            mm = np.memmap(folder / "x.f32", dtype=np.float32, mode="w+", shape=X.shape)
            mm[:] = X
            mm.flush()
            del mm
            self._files_made = True
        return folder

    def close_case(self) -> None:
        while self.case_closers:
            self.case_closers.pop()()

    def close(self) -> None:
        self.close_case()
        while self._closers:
            self._closers.pop()()
        self._resources.clear()


# -- samplers ---------------------------------------------------------------------------------

def _weighted(space: Space, **kw: Any) -> Any:
    if "num_samples" in kw or kw.get("replace") is False:  # finite epochs (the endless stream has no repeats)
        kw["repeats"] = space.repeats
    if space.subset is None:
        return WeightedSampler(WEIGHTS[: space.length], **kw)
    return WeightedSubsetSampler(WEIGHTS[space.subset], space.subset, **kw)


register_sampler("in_order", lambda space: None)
register_sampler("int_seed", lambda space: None, lambda: 7)
register_sampler("generator", lambda space: None, lambda: np.random.default_rng(5), rng_object=True)
register_sampler("random_state", lambda space: None, lambda: np.random.RandomState(5), rng_object=True)
_ZERO = frozenset({5})
register_sampler("weighted_replace", lambda space: _weighted(space, num_samples=20), lambda: 3, weighted=True,
                 never=_ZERO)
register_sampler("weighted_no_replace", lambda space: _weighted(space, replace=False), lambda: 3, weighted=True,
                 never=_ZERO)
register_sampler("weighted_endless", lambda space: _weighted(space), lambda: 3, endless=True, weighted=True,
                 never=_ZERO)
register_sampler("weighted_in_order", lambda space: _weighted(space, num_samples=20), needs_shuffle=True,
                 weighted=True, never=_ZERO)
register_sampler("balanced_seed", lambda space: BalancedSampler(LABELS, 2, 2, repeats=space.repeats, seed=4),
                 batch_size=4,
                 whole_batches=True)
register_sampler("balanced_drawn", lambda space: BalancedSampler(LABELS, 2, 2, repeats=space.repeats),
                 batch_size=4,
                 whole_batches=True, drawn_seed=True)


def sampler_kwargs(smp: Sampler, space: Space = Space()) -> dict:
    """Return the keyword arguments that give a random-access source this sampler over ``space``."""
    sampler = smp.make(space)
    if sampler is not None:
        return {"sampler": sampler}
    kw: dict = {} if space.subset is None else {"indices": space.subset}
    if space.repeats != 1:
        kw["repeats"] = space.repeats
    return kw


# -- sources ----------------------------------------------------------------------------------

def _array(env: Env, smp: Sampler) -> Any:
    return ArrayDataSource([X, IDS], **sampler_kwargs(smp))


def _subset(env: Env, smp: Sampler) -> Any:
    return ArrayDataSource([X, IDS], **sampler_kwargs(smp, Space(subset=SUBSET)))


def _composite(env: Env, smp: Sampler) -> Any:
    return CompositeDataSource([ArrayDataSource([X, IDS], **sampler_kwargs(smp)), ArrayDataSource([WIDE])])


def _composite_nested(env: Env, smp: Sampler) -> Any:
    inner = CompositeDataSource(
        [ArrayDataSource([X, IDS], **sampler_kwargs(smp)), ArrayDataSource([WIDE])], flatten=False
    )
    return CompositeDataSource([inner, ArrayDataSource([SMALL], repeats=-1)])


def _composite_seeded_map(env: Env, smp: Sampler) -> Any:
    mapped = ArrayDataSource([X, IDS], **sampler_kwargs(smp)).map(jitter, seed=1)
    return CompositeDataSource([mapped, ArrayDataSource([WIDE])])


def _choice(stratified: bool) -> Callable:
    def build(env: Env, smp: Sampler) -> Any:
        return ChoiceDataSource(
            [ArrayDataSource([X, IDS], **sampler_kwargs(smp)), ArrayDataSource([X2, IDS2])], stratified=stratified
        )
    return build


def _repeats_2(env: Env, smp: Sampler) -> Any:
    return ArrayDataSource([X, IDS], **sampler_kwargs(smp, Space(repeats=2)))


def _include_indices(env: Env, smp: Sampler) -> Any:
    return ArrayDataSource([X], include_indices=True, **sampler_kwargs(smp, Space(subset=SUBSET)))


def _seeded_map(env: Env, smp: Sampler) -> Any:
    return ArrayDataSource([X, IDS], **sampler_kwargs(smp)).map(jitter, seed=5)


def _failing_map(env: Env, smp: Sampler) -> Any:
    return ArrayDataSource([X, IDS], **sampler_kwargs(smp)).map(refuse_corrupt)


def _dataframe(env: Env, smp: Sampler) -> Any:
    import pytest

    pd = pytest.importorskip("pandas")
    from batchup.tables import DataFrameSource

    frame = pd.DataFrame({"a": X[:, 0], "b": (IDS % 4).astype(np.int16), "id": IDS})
    return DataFrameSource(frame, x_structure=["a", ("b", Halve())], y_structure="id", **sampler_kwargs(smp))


def _inventory(env: Env, smp: Sampler) -> Any:
    from batchup.records import InventorySource

    inventory = {"text": TEXTS, "id": IDS.tolist()}
    return InventorySource(inventory, TextLength(), RecordId(), **sampler_kwargs(smp))


def _file_array(env: Env, smp: Sampler) -> Any:
    from batchup.arrays import FileArray

    files = FileArray([f"s{i}.npy" for i in range(N)], np.load, base_dir=env.files())
    return ArrayDataSource([files, IDS], **sampler_kwargs(smp))


def _memmap(env: Env, smp: Sampler) -> Any:
    mm = np.memmap(env.files() / "x.f32", dtype=np.float32, mode="r", shape=X.shape)
    return ArrayDataSource([mm, IDS], **sampler_kwargs(smp))


register_source("array", _array)
register_source("subset", _subset, accepts=lambda smp: not smp.whole_batches)
register_source("composite", _composite, mask=lambda m: m[0], bounded=True)
register_source("composite_nested", _composite_nested, ids=lambda b: b[0][1], mask=lambda m: m[0][0],
                bounded=True, endless_member=True)
register_source("composite_seeded_map", _composite_seeded_map, mask=lambda m: m[0], bounded=True)
# A choice run ends when the first member runs out (not stratified), so num_samples (the sum of
# the members', as in BatchUp 0.2) only bounds what is yielded and the count depends on the round
# order; ids come from two members, so coverage is not the sampled member's order, and a member's
# short last batch may come before the end.
register_source("choice", _choice(False), bounded=True, exact_samples=lambda smp: False,
                count_varies=lambda smp: True, coverage=False, short_only_last=False, unknown_count_with_rng=True)
# With an endless member a stratified choice is not stratified (BatchUp 0.2): num_samples is inf.
register_source("choice_stratified", _choice(True), bounded=True, exact_samples=lambda smp: not smp.endless,
                count_varies=lambda smp: smp.endless, coverage=False, short_only_last=False)
# Two epochs a run: batches run across the epoch boundary, shards split each epoch.
register_source("repeats_2", _repeats_2, repeats=2)
# The absolute indices (of a subset) come first in every batch.
register_source("include_indices", _include_indices, ids=lambda b: b[0], accepts=lambda smp: not smp.whole_batches)
register_source("seeded_map", _seeded_map)
# Errors in order: the batches before the failing one, then the error (not in the count cases).
register_source("failing_map", _failing_map, fails=True)
register_source("dataframe", _dataframe)
register_source("inventory", _inventory)
register_source("file_array", _file_array)
register_source("memmap", _memmap)


# -- shards -----------------------------------------------------------------------------------

register_shard("none", 1, lambda r: None)
register_shard("pad", 3, lambda r: ShardSpec(r, 3, "pad"))
register_shard("drop", 3, lambda r: ShardSpec(r, 3, "drop"))
register_shard("drop_contiguous", 2, lambda r: ShardSpec(r, 2, "drop", "contiguous"))


# -- refusals by design -----------------------------------------------------------------------

register_refusal(lambda src, smp, sh, e: smp.needs_shuffle, NotImplementedError, "in-order iteration is not supported")
register_refusal(lambda src, smp, sh, e: sh.num_shards > 1 and (smp.rng_object or smp.drawn_seed),
                 SeedRequiredError, "int seed shared across ranks")
register_refusal(lambda src, smp, sh, e: smp.endless and not src.bounded and e > 0, ValueError, "single pass")


# -- drivers ----------------------------------------------------------------------------------

def _serial(env: Env, ds: Any) -> Callable:
    return ds.batch_iterator


def _prefetched(par_of: Callable) -> Callable:
    """An iterator driver over a ParallelDataSource made by ``par_of(env, ds)``; iterators are closed."""

    def open_(env: Env, ds: Any) -> Callable:
        par = par_of(env, ds)
        env.case_closers.append(par.close)

        def make(bs: Any, shuffle: Any = None, **options: Any) -> Any:
            it = par.batch_iterator(bs, shuffle, **options)
            env.case_closers.append(it.close)
            return it

        return make

    return open_


def _process_pool(env: Env) -> Any:
    from batchup.parallel.process_pool import WorkerProcessPool

    return env.resource("processes", lambda: WorkerProcessPool(2))


def _joblib_pool(env: Env) -> Any:
    def make() -> Any:
        import joblib

        from batchup.parallel import JoblibWorkerPool

        with joblib.parallel_config(backend="loky", n_jobs=2):
            return JoblibWorkerPool()

    def close(pool: Any) -> None:
        pool.close()
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)

    return env.resource("joblib", make, lambda: close(env._resources["joblib"]))


def _numpy(batch: Any) -> Any:
    """Turn tensors and device arrays back into NumPy arrays, keeping the nesting."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(_numpy(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _numpy(v) for k, v in batch.items()}
    if isinstance(batch, np.ndarray):
        return batch
    if callable(getattr(batch, "numpy", None)):  # torch and TensorFlow tensors
        return batch.numpy()
    if type(batch).__module__.startswith(("jax", "jaxlib")):
        return np.asarray(batch)
    return batch


def _keras_py_dataset(env: Env, ds: Any) -> Callable:
    from batchup.adapters.keras import as_py_dataset

    def run(bs: Any, shuffle: Any, drop_last: bool, shard: Any, epochs: list, limit: Any, out: EpochRun) -> None:
        pyds = as_py_dataset(ds, bs, shuffle=shuffle, drop_last=drop_last, shard=shard, epoch=epochs[0])
        out.seed = pyds.batches.seed
        pyds.on_epoch_end()  # Keras calls it before the first epoch too; nothing was served, so no move
        for e in epochs:
            assert pyds.epoch == e, f"the PyDataset is at epoch {pyds.epoch}, expected {e}"
            n = len(pyds)
            batches = out.start_epoch(n)
            for i in range(n):
                batches.append(pyds[i])
            pyds.on_epoch_end()

    return run


def _keras_generator(env: Env, ds: Any) -> Callable:
    from batchup.adapters.keras import as_generator

    def run(bs: Any, shuffle: Any, drop_last: bool, shard: Any, epochs: list, limit: Any, out: EpochRun) -> None:
        gen = as_generator(ds, bs, shuffle=shuffle, drop_last=drop_last, shard=shard, epochs=len(epochs))
        out.flat = True
        out.start_epoch(None).extend(itertools.islice(gen, limit))  # extend keeps what came before an error

    return run


def _torch(num_workers: int, persistent: bool = False) -> Callable:
    def open_(env: Env, ds: Any) -> Callable:
        import torch

        from batchup.adapters.torch import as_iterable_dataset

        def run(bs: Any, shuffle: Any, drop_last: bool, shard: Any, epochs: list, limit: Any, out: EpochRun) -> None:
            dset = as_iterable_dataset(ds, bs, shuffle=shuffle, drop_last=drop_last, shard=shard, epoch=epochs[0])
            out.seed = dset.stream.seed
            loader = torch.utils.data.DataLoader(
                dset, batch_size=None, num_workers=num_workers, persistent_workers=persistent
            )
            try:
                for e in epochs:
                    dset.set_epoch(e)  # reaches persistent workers through shared memory
                    try:
                        length = len(dset)
                    except TypeError:
                        length = None
                    batches = out.start_epoch(length)
                    it = iter(loader)
                    try:
                        batches.extend(_numpy(b) for b in itertools.islice(it, limit))
                    finally:
                        if not persistent:
                            _shutdown(it)
                        del it
            finally:
                _shutdown(getattr(loader, "_iterator", None))

        return run

    return open_


def _shutdown(it: Any) -> None:
    """Stop a DataLoader iterator's worker processes now (not whenever it is collected)."""
    shutdown = getattr(it, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _torch_tensors(env: Env, ds: Any) -> Callable:
    from batchup.adapters.torch import iter_tensors

    def make(bs: Any, shuffle: Any = None, **options: Any) -> Any:
        return iter_tensors(ds.batch_iterator(bs, shuffle, **options))

    return make


def _tf_data(env: Env, ds: Any) -> Callable:
    from batchup.adapters.tf import as_tf_dataset

    def run(bs: Any, shuffle: Any, drop_last: bool, shard: Any, epochs: list, limit: Any, out: EpochRun) -> None:
        tds = as_tf_dataset(ds, bs, shuffle=shuffle, drop_last=drop_last, shard=shard, epoch=epochs[0])
        cardinality = int(tds.cardinality())
        for _ in epochs:  # every pass over a tf.data dataset is the next epoch
            batches = out.start_epoch(cardinality if cardinality >= 0 else None)
            batches.extend(_numpy(b) for b in itertools.islice(iter(tds), limit))

    return run


def _jax(env: Env, ds: Any) -> Callable:
    from batchup.adapters.jax import prefetch_to_device

    def make(bs: Any, shuffle: Any = None, **options: Any) -> Any:
        return prefetch_to_device(ds.batch_iterator(bs, shuffle, **options), size=2)

    return make


def _jax_expect(batch: Any) -> Any:
    """JAX stores 64-bit values as 32-bit unless ``jax_enable_x64`` is set (its documented default)."""
    import jax

    def leaf(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return x.astype(jax.dtypes.canonicalize_dtype(x.dtype))
        return x

    if isinstance(batch, (tuple, list)):
        return type(batch)(_jax_expect(b) for b in batch)
    return leaf(batch)


def _identity(state: Any) -> Any:
    return state


def _pydataset_refuses(src: Source, smp: Sampler, shard: Shard) -> tuple | None:
    if smp.endless and not src.bounded:
        return ValueError, "repeats forever"
    return None


register_driver("serial", "iterator", _serial, to_core_state=_identity, from_core_state=_identity)
register_driver("inline", "iterator", _prefetched(lambda env, ds: ds.prefetch(0)),
                to_core_state=_identity, from_core_state=_identity)
register_driver("threads", "iterator", _prefetched(lambda env, ds: ds.prefetch(2, kind="thread")),
                to_core_state=_identity, from_core_state=_identity)
# One process pool (and one joblib pool) serves every case of a module: ds.prefetch(2) is exactly
# ParallelDataSource(ds, buffer, WorkerProcessPool(2)), and starting processes per case would
# dominate the run time.
register_driver("processes", "iterator", _prefetched(lambda env, ds: _process_pool(env).parallel_data_source(ds, 4)),
                to_core_state=_identity, from_core_state=_identity)
register_driver("joblib", "iterator", _prefetched(lambda env, ds: _joblib_pool(env).parallel_data_source(ds, 4)),
                to_core_state=_identity, from_core_state=_identity, needs=("joblib",))
register_driver("torch_0", "epochs", _torch(0), adapter=True, walks_epochs=True, needs=("torch",))
register_driver("torch_2", "epochs", _torch(2), adapter=True, walks_epochs=True, needs=("torch",))
register_driver("torch_2_persistent", "epochs", _torch(2, persistent=True), adapter=True, walks_epochs=True,
                needs=("torch",))
register_driver("torch_iter_tensors", "iterator", _torch_tensors, needs=("torch",),
                to_core_state=lambda s: s["inner"], from_core_state=lambda s: {"kind": "tensors", "inner": s})
register_driver("keras_py_dataset", "epochs", _keras_py_dataset, adapter=True, walks_epochs=True,
                refuses=_pydataset_refuses, needs=("keras",))
register_driver("keras_generator", "epochs", _keras_generator, adapter=True, walks_epochs=True,
                from_epoch_zero=True, needs=("keras",))
def _tf_same_error(core_error: BaseException, error: BaseException) -> bool:
    """tf.data re-raises an exception from the Python generator as a ``tf.errors.OpError`` naming it."""
    import tensorflow as tf

    return isinstance(error, tf.errors.OpError) and f"{type(core_error).__name__}: {core_error}" in str(error)


# Runs only where TensorFlow imports (CI's TensorFlow venv); skipped here.
register_driver("tf_data", "epochs", _tf_data, adapter=True, walks_epochs=True, needs=("tensorflow",),
                same_error=_tf_same_error)
# Last: JAX starts threads of its own, and the process drivers above fork.
register_driver("jax", "iterator", _jax, expect=_jax_expect,
                to_core_state=lambda s: s["inner"], from_core_state=lambda s: {"kind": "device_prefetch", "inner": s},
                needs=("jax",))


# -- known bugs (strict xfails; remove an entry when its bug is fixed) --------------------------

def _walks(combo: Combo) -> bool:
    """Whether the check reaches epoch ``epoch + 1`` (adapters, and the lengths check)."""
    return combo.driver is None or combo.driver.walks_epochs


register_known_bug(
    lambda c: (c.source.endless_member or (c.sampler.endless and c.source.bounded))
    and (c.epoch > 0 or (c.driver is not None and c.driver.walks_epochs)) and not c.refused(),
    "a composite or choice source with a repeats=-1 member cannot be iterated with epoch >= 1 "
    "(ValueError 'an endless run is a single pass'), so its second Keras/torch/tf.data epoch fails",
    checks=("driver", "counts"),
)
register_known_bug(
    lambda c: (c.source.endless_member or (c.sampler.endless and c.source.bounded)) and not c.refused(),
    "as above: the lengths check asks for epoch + 1 of a source with a repeats=-1 member",
    checks=("lengths",),
)
register_known_bug(
    lambda c: c.source.unknown_count_with_rng and c.sampler.rng_object and c.epoch > 0
    and (c.driver is None or not c.driver.adapter) and not c.refused(),
    "a non-stratified ChoiceDataSource shuffled by a RandomState or Generator refuses epoch >= 1 with "
    "the message for endless runs: its plan's length is unknown, and BatchPlan takes unknown for endless",
    checks=("driver", "counts"),
)
register_known_bug(
    lambda c: (c.sampler.weighted and not c.source.count_varies(c.sampler))
    or (c.sampler.drawn_seed and c.shard.num_shards > 1),
    "keras.steps_per_epoch plans an in-order pass with the sampler's own seed: for a weighted sampler it "
    "raises NotImplementedError, for a balanced sampler without seed= and a shard SeedRequiredError, "
    "where num_samples() counts both (their counts do not depend on the seed)",
    checks=("steps",),
)


def _tf_count_differs(c: Combo) -> bool:
    """Whether a pass of ``as_tf_dataset`` has another number of batches than its epoch 0 (on some rank)."""
    if not c.source.count_varies(c.sampler) or c.refused() or c.sampler.endless:
        return False
    import tempfile

    from batchup.adapters._common import resolve_seed

    with tempfile.TemporaryDirectory() as folder:
        ds = c.source.build(Env(pathlib.Path(folder)), c.sampler)
        seed = resolve_seed(c.sampler.shuffle())
        for shard in c.shard.ranks():
            counts = {ds.num_batches(c.sampler.batch_size, shuffle=seed, drop_last=c.drop_last, shard=shard, epoch=e)
                      for e in (0, c.epoch, c.epoch + 1)}
            if len(counts) > 1:
                return True
    return False


register_known_bug(
    lambda c: c.driver is not None and c.driver.name == "tf_data" and _tf_count_differs(c),
    "as_tf_dataset asserts epoch 0's number of batches as the cardinality of every pass, but a "
    "non-stratified choice source has another number in other epochs: tf.data raises "
    "FailedPreconditionError on such a pass",
    checks=("driver",),
)


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
    """Whether every module in ``modules`` can be imported (without importing it twice)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("KERAS_BACKEND", "jax")
    print(describe())
