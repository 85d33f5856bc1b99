"""The conformance registry: sources, samplers, shards and drivers, and the cases made from them.

batchup promises that a pipeline gives the same batches whichever way it is
driven (see the guide page "How batches are planned"). This module lists
what the conformance suite combines: the data, the sources, samplers and
shards, the refusals by design and the known bugs (the drivers are in
``drivers.py``, the machinery in ``registry.py``, the checks in
``harness.py``); ``test_conformance.py`` checks the promise on the
combinations. Import the suite's names from here: importing this module
fills the registry.

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

import os
import pathlib
from typing import Any, Callable

import numpy as np

from batchup.samplers import BalancedSampler, ShardSpec, WeightedSampler, WeightedSubsetSampler
from batchup.samplers.plan import SeedRequiredError
from batchup.sequences import BucketSampler, PadBatch, RaggedArray
from batchup.sources import ArrayDataSource, ChoiceDataSource, CompositeDataSource, MixtureDataSource
from tests.conformance import drivers  # noqa: F401 - registers the drivers
from tests.conformance.registry import (
    DRIVERS,
    FACTORS,
    SAMPLERS,
    SHARDS,
    SOURCES,
    Case,
    Combo,
    CountCase,
    Driver,
    Env,
    EpochRun,
    N,
    Sampler,
    Shard,
    Source,
    Space,
    available,
    check_message,
    count_cases,
    describe,
    design_refusal,
    driver_cases,
    known_bug,
    pairwise,
    register_driver,
    register_known_bug,
    register_refusal,
    register_sampler,
    register_shard,
    register_source,
)

__all__ = [
    "DRIVERS", "ENDLESS_LIMIT", "FACTORS", "SAMPLERS", "SHARDS", "SOURCES", "Case", "Combo", "CountCase", "Driver",
    "Env", "EpochRun", "Sampler", "Shard", "Source", "Space", "available", "check_message", "count_cases",
    "describe", "design_refusal", "driver_cases", "known_bug", "pairwise", "register_driver",
    "register_known_bug", "register_refusal", "register_sampler", "register_shard", "register_source",
    "sampler_kwargs",
]

# -- the data: 22 samples, ids 0..21 -------------------------------------------------------

IDS = np.arange(N, dtype=np.int64)
X = (np.arange(N * 3, dtype=np.float32).reshape(N, 3) / 4).astype(np.float32)
#: Variable-length samples for the ragged source and the bucket sampler: sample i has LENGTHS[i] tokens, all i.
LENGTHS = (np.arange(N) * 7 % 9 + 1).astype(np.int64)
RAGGED = RaggedArray.from_lengths(np.repeat(IDS, LENGTHS), LENGTHS)
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
register_sampler("bucket", lambda space: BucketSampler(LENGTHS[: space.length], max_tokens=16, boundaries=[3, 6],
                                                        repeats=space.repeats),
                 lambda: 7, batch_size=None, deals_steps=True)


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


def _mixture(env: Env, smp: Sampler) -> Any:
    sampled = ArrayDataSource([X, IDS], **sampler_kwargs(smp)).map(jitter, seed=3)
    return MixtureDataSource([sampled, ArrayDataSource([X2, IDS2])], [3, 1])


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


def _write_files(folder: pathlib.Path) -> None:
    """Write one ``.npy`` file per sample and a memmap of ``X``."""
    for i in range(N):
        np.save(folder / f"s{i}.npy", X[i])
    mm = np.memmap(folder / "x.f32", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm


def _file_array(env: Env, smp: Sampler) -> Any:
    from batchup.arrays import FileArray

    files = FileArray([f"s{i}.npy" for i in range(N)], np.load, base_dir=env.folder("files", _write_files))
    return ArrayDataSource([files, IDS], **sampler_kwargs(smp))


def _memmap(env: Env, smp: Sampler) -> Any:
    mm = np.memmap(env.folder("files", _write_files) / "x.f32", dtype=np.float32, mode="r", shape=X.shape)
    return ArrayDataSource([mm, IDS], **sampler_kwargs(smp))


register_source("array", _array)
# Members of composites and choices share one batch size, which a sampler that sizes its own
# batches (bucket) cannot join; subsets have no bucket sampler of their own.
_SIZED = lambda smp: smp.batch_size is not None  # noqa: E731
register_source("subset", _subset, accepts=lambda smp: not smp.whole_batches and _SIZED(smp))
register_source("composite", _composite, mask=lambda m: m[0], bounded=True, accepts=_SIZED)
register_source("composite_nested", _composite_nested, ids=lambda b: b[0][1], mask=lambda m: m[0][0],
                bounded=True, endless_member=True, accepts=_SIZED)
register_source("composite_seeded_map", _composite_seeded_map, mask=lambda m: m[0], bounded=True, accepts=_SIZED)
# A choice run ends when the first member runs out (not stratified), so num_samples (the sum of
# the members', as in BatchUp 0.2) only bounds what is yielded and the count depends on the round
# order; ids come from two members, so coverage is not the sampled member's order, and a member's
# short last batch may come before the end.
register_source("choice", _choice(False), bounded=True, exact_samples=lambda smp: False, accepts=_SIZED,
                count_varies=lambda smp: True, coverage=False, short_only_last=False, unknown_count_with_rng=True)
# With an endless member a stratified choice is not stratified (BatchUp 0.2): num_samples is inf.
register_source("choice_stratified", _choice(True), bounded=True, exact_samples=lambda smp: not smp.endless,
                accepts=_SIZED,
                count_varies=lambda smp: smp.endless, coverage=False, short_only_last=False)
# Two epochs a run: batches run across the epoch boundary, shards split each epoch.
# A mixture deals out single samples (whole batches of a balanced member are not kept: its batches
# would be full only by chance), and its finite second member ends every epoch.
register_source("mixture", _mixture, bounded=True,
                accepts=lambda smp: not smp.whole_batches and smp.batch_size is not None)
register_source("ragged", lambda env, smp: ArrayDataSource([RAGGED, IDS], **sampler_kwargs(smp)).map(PadBatch()),
                ids=lambda batch: batch[2])
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


# -- known bugs (strict xfails; remove an entry when its bug is fixed) --------------------------
#
# None open. Register one with register_known_bug(when, reason, checks=...) and a reproduction in
# test_conformance_findings.py; a known-bug case that starts to pass fails with "remove the entry".


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("KERAS_BACKEND", "jax")
    print(describe())
