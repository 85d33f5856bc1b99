"""MixturePlan: which member samples form every batch of a mixture, and in which order.

The plan of :class:`~batchup.sources.MixtureDataSource` (whose module
documentation defines a mixture's epoch): the slots of every member per
epoch, their order, the rows of each batch, and the checkpoint fields.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from batchup import _rng
from batchup.samplers.flat import FlatPlan
from batchup.samplers.plan import BatchPlan, PlanOptions, SeedRequiredError
from batchup.sources._mixing import (
    check_tree,
    concat,
    length,
    put,
    smooth_order,
    take,
)
from batchup.sources.mapped import MapDataSource

if TYPE_CHECKING:
    from batchup.sources.mixture import MixtureDataSource

__all__ = ["MixtureIndices", "MixturePlan"]

#: Samples per member plan batch when members are walked (the order does not depend on it).
_CHUNK = 4096
#: Samples per cached block of an endless member's stream.
_ENDLESS_BLOCK = 65536

MixtureIndices = collections.namedtuple("MixtureIndices", ["member", "positions", "parts", "probes"])
MixtureIndices.__doc__ = """Index batch of a mixture.

``member[r]`` is the member of row ``r`` and ``positions[r]`` its position in
that member's stream; ``parts[i]`` is what member ``i``'s ``fetch_batch``
takes for its rows (in row order), or ``None`` if it has none; ``probes[i]``
one row of member ``i`` (``None`` for members of weight 0), fetched once to
check that every member's batches have the same structure.

``MixturePlan.indices(b)`` builds them and
``MixtureDataSource.fetch_batch`` takes them; code that fetches samples
itself reads ``member`` and ``parts``.

Parameters
----------
member : ndarray of int, shape (rows,)
    The member number of every row of the batch, in row order.
positions : ndarray of int, shape (rows,)
    Every row's position in its member's stream (the member's passes joined
    end to end, counted from pass 0).
parts : tuple of (index batch or None)
    One entry per member: the member's own index batch for its rows, in row
    order (a 1-D int array of absolute indices, or a tuple of them for a
    composite member), or ``None`` when no row of the batch is the member's.
probes : tuple of (index batch or None)
    One entry per member: an index batch of one row of the member (its first
    row of the epoch), or ``None`` for a member of weight 0.

Examples
--------
>>> import numpy as np
>>> from batchup.sources import ArrayDataSource, MixtureDataSource
>>> mix = MixtureDataSource([ArrayDataSource([np.arange(7)]), ArrayDataSource([np.arange(100, 104)])], [0.7, 0.3])
>>> ix = mix.plan(5).indices(1)
>>> ix.member.tolist(), ix.positions.tolist(), [p.tolist() for p in ix.parts]
([1, 0, 0, 1, 0], [1, 4, 5, 2, 6], [[4, 5, 6], [1, 2]])
>>> mix.fetch_batch(ix, 1)[0].tolist()
[101, 4, 5, 102, 6]
"""


def _rounded(w: np.ndarray) -> list:
    """Return the normalised weights as checkpoint fields (12 digits: 7:2:1 and .7:.2:.1 agree)."""
    return [float(f"{x:.12g}") for x in w / w.sum()]


def _name(i: int, d: Any) -> str:
    return f"member {i} ({type(d).__name__})"


# -- the plan ---------------------------------------------------------------------------------

class MixturePlan(BatchPlan):
    """The plan of a mixture: which member samples form every batch, in which order.

    Epoch ``E`` of the run has ``sum(counts)`` slots; slot ``C[i] + j`` (``C``
    the running sum of the counts) is position ``E * counts[i] + j`` of member
    ``i``'s stream. A :class:`~batchup.samplers.FlatPlan` over the slots
    orders them (a smooth interleave in order; a permutation from
    ``(seed, epoch)`` when shuffled), cuts batches across epoch boundaries,
    shards and pads, so ``drop_last``, ``shard`` and ``epoch`` mean what they
    mean everywhere. ``indices(b)`` is a :class:`MixtureIndices`.

    Members are planned without ``shard`` or ``drop_last``: member ``i``'s
    pass ``e`` is its plan for ``epoch=e`` with the seed ``(seed, i)``.

    Users get a plan from :meth:`MixtureDataSource.plan` rather than build
    one.

    Parameters
    ----------
    source : MixtureDataSource
        The mixture whose members, weights, ``epoch_size`` and ``repeats``
        are planned.
    batch_size : int
        Rows per batch of the mixture.
    options : PlanOptions
        The validated options of the run; ``options.shuffle`` must already be
        ``None`` or a ``SeedKey`` (:meth:`MixtureDataSource.plan` turns
        ``True`` or an RNG object into a seed drawn from it).
    member_keys : list of (SeedKey or None), optional
        The seed of each member's plans. ``None`` (the default) derives
        ``(seed, i)`` for member ``i`` from ``options.shuffle`` (no seed when
        in order); restoring a checkpoint passes the seeds it recorded.

    Raises
    ------
    ValueError
        If an endless member is not random access or has no fixed batch size,
        a member of positive weight has no samples or gets none in an epoch,
        every member of positive weight is endless and the source has no
        ``epoch_size``, or ``epoch`` is not 0 for an endless run; from
        ``indices(b)``, if a member's passes differ in length.
    SeedRequiredError
        For a sharded run whose seed (or a member's) was drawn at random or
        from an RNG object, which the ranks cannot share.
    """

    KIND = "mixture"

    def __init__(self, source: MixtureDataSource, batch_size: Any, options: PlanOptions,
                 member_keys: list | None = None) -> None:
        key = options.shuffle
        datasets = source.datasets
        k = len(datasets)
        self._source = source
        self._keys = list(member_keys) if member_keys is not None else [
            None if key is None else key.child(i) for i in range(k)]
        self._member_bs = [_member_batch_size(d) for d in datasets]
        self._blocks: list = [collections.OrderedDict() for _ in range(k)]
        self._smooth: np.ndarray | None = None
        self._probe_cache: tuple = (-1, None)
        self._firsts = [self._member_plan(i, 0) for i in range(k)]
        self._endless = [p.num_batches is None and p.num_samples == np.inf for p in self._firsts]
        self._lengths = [self._block_length(i) for i in range(k)]
        self._check_shard(options)
        self.counts = source._counts(self._lengths, self._endless)
        self._starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        own = None if key is None else key.child(k)
        total = int(self._starts[-1])
        self._order = FlatPlan(self._draw, total, batch_size, source.repeats,
                               dataclasses.replace(options, shuffle=own), identity={"sampler": "mixture"})
        self._setup(options, self._order.batch_size, self._order.num_batches, self._order.num_samples)
        self.random_access = True

    # -- members ---------------------------------------------------------------------------
    def _member_plan(self, i: int, e: int) -> BatchPlan:
        options = PlanOptions(self._keys[i], False, None, e)
        return self._source.datasets[i]._plan(self._member_bs[i], options)

    def _block_length(self, i: int) -> int:
        p = self._firsts[i]
        if self._endless[i]:
            bs = p.batch_size
            if not p.random_access or bs is None:
                raise ValueError(f"{_name(i, self._source.datasets[i])} is endless, so the mixture needs random "
                                 "access to its batches and a fixed batch size; give it finite repeats")
            return max(1, _ENDLESS_BLOCK // bs) * bs
        if p.num_samples is None:  # a sampler that cannot count: walk its first pass
            block = self._walk(i, p, 0, None)
            self._blocks[i][0] = block
            return length(block)
        if p.num_samples == 0 and self._source.weights[i] > 0:
            raise ValueError(f"{_name(i, self._source.datasets[i])} has no samples but the weight "
                             f"{self._source.weights[i]:g}; remove it or give it weight 0")
        return int(p.num_samples)

    def _check_shard(self, options: PlanOptions) -> None:
        shard = options.shard
        if shard is None or shard.num_shards == 1:
            return
        key = options.shuffle
        if isinstance(key, _rng.SeedKey) and key.drawn:
            raise SeedRequiredError(
                "sharding needs every rank to draw the same order, so shuffle must be an int seed shared across "
                "ranks (shuffle=<int>); a mixture given shuffle=True or an RNG object draws its seed at random")
        for i, p in enumerate(self._firsts):
            got = p.options.shuffle
            if isinstance(got, _rng.SeedKey) and got.drawn:
                raise SeedRequiredError(
                    f"sharding needs every rank to draw the same order, but {_name(i, self._source.datasets[i])} "
                    "drew its own seed at random; give its sampler an int seed shared across ranks (seed=<int>)")

    def _walk(self, i: int, plan: BatchPlan, first: int, count: int | None) -> Any:
        where = _name(i, self._source.datasets[i])
        if plan.random_access:
            stop = first + count if count is not None else len(plan)
            trees = [check_tree(plan.indices(b), where) for b in range(first, stop)]
        else:
            trees = [check_tree(t, where) for t in plan.iterator()]
        if not trees:
            raise ValueError(f"{where} has no samples")
        return concat(trees)

    def _block(self, i: int, e: int) -> Any:
        cache = self._blocks[i]
        got = cache.get(e)
        if got is not None:
            return got
        if self._endless[i]:
            per = self._lengths[i] // (self._firsts[i].batch_size or 1)
            block = self._walk(i, self._firsts[i], e * per, per)
        else:
            plan = self._firsts[i] if e == 0 else self._member_plan(i, e)
            block = self._walk(i, plan, 0, None)
            if length(block) != self._lengths[i]:
                raise ValueError(f"{_name(i, self._source.datasets[i])} has {length(block)} samples in pass {e} "
                                 f"but {self._lengths[i]} in pass 0; a mixture needs passes of one length")
        # Keep enough passes for one epoch of this member, plus the neighbours (oldest out first;
        # threads serving a Keras PyDataset may race here, at worst computing a pass twice).
        keep = 2 + -(-int(self.counts[i]) // self._lengths[i])
        while len(cache) >= keep:
            try:
                cache.popitem(last=False)
            except KeyError:
                break
        cache[e] = block
        return block

    def _rows(self, i: int, positions: np.ndarray) -> Any:
        size = self._lengths[i]
        first = int(positions.min()) // size
        if int(positions.max()) // size == first:
            return take(self._block(i, first), positions - first * size)
        blocks, offsets = np.divmod(positions, size)
        out = None
        for e in np.unique(blocks):
            mask = blocks == e
            out = put(out, take(self._block(i, int(e)), offsets[mask]), mask)
        return out

    # -- the epoch order -------------------------------------------------------------------
    def _draw(self, rng: Any) -> np.ndarray:
        if rng is not None:
            return rng.permutation(int(self._starts[-1]))
        if self._smooth is None:
            self._smooth = smooth_order(self.counts)
        return self._smooth

    # -- BatchPlan -------------------------------------------------------------------------
    def indices(self, b: int) -> MixtureIndices:
        slots = self._order.indices(b)
        n = len(slots)
        assert self.batch_size is not None
        flat_pos = b * self.batch_size + np.arange(n, dtype=np.int64)
        epochs = self._order.first_epoch + flat_pos // self._order.samples_per_epoch
        member = np.searchsorted(self._starts, slots, side="right") - 1
        positions = epochs * self.counts[member] + (slots - self._starts[member])
        parts = []
        for i in range(len(self.counts)):
            mask = member == i
            parts.append(self._rows(i, positions[mask]) if mask.any() else None)
        return MixtureIndices(member, positions, tuple(parts), self._probes(int(epochs[0]) if n else 0))

    def _probes(self, e: int) -> tuple:
        """Return one row of every member used in epoch ``e`` (its first of the epoch)."""
        cached_e, probes = self._probe_cache
        if cached_e != e:
            probes = tuple(None if c == 0 else self._rows(i, np.array([e * c], np.int64))
                           for i, c in enumerate(self.counts))
            self._probe_cache = (e, probes)
        return probes

    def padding(self, b: int) -> Any:
        return self._order.padding(b)

    def _identity(self) -> dict:
        return {"weights": _rounded(self._source.weights), "counts": [int(c) for c in self.counts],
                "members": [p.fingerprint() for p in self._firsts]}

    def _geometry(self) -> dict:
        return self._order._geometry()

    def adopt(self, fingerprint: Any) -> MixturePlan:
        if not isinstance(fingerprint, Mapping):
            return self
        plan = self
        key = self.options.shuffle
        if isinstance(key, _rng.SeedKey) and key.drawn and fingerprint.get("shuffle") == "seed":
            saved = _rng.key_from_json(fingerprint.get("seed"), "plan.seed")
            if saved != key:
                saved = _rng.SeedKey(saved.seed, saved.path, True)
                plan = MixturePlan(self._source, self.batch_size, dataclasses.replace(self.options, shuffle=saved))
        members = fingerprint.get("members")
        if isinstance(members, list) and len(members) == len(plan._firsts):
            keys = list(plan._keys)
            changed = False
            for i, (p, fp) in enumerate(zip(plan._firsts, members)):
                adopted = p.adopt(fp)
                if adopted is not p:
                    keys[i], changed = adopted.options.shuffle, True
            if changed:
                plan = MixturePlan(self._source, self.batch_size, plan.options, member_keys=keys)
        return plan


def _member_batch_size(d: Any) -> Any:
    """Return the batch size a member is walked with: its sampler's own, else a fixed chunk."""
    while isinstance(d, MapDataSource):
        d = d.source
    return None if hasattr(getattr(d, "sampler", None), "batch_size") else _CHUNK
