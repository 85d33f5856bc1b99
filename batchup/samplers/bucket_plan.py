"""BucketPlan: the batches of a BucketSampler run, epoch by epoch, as arithmetic.

One epoch is the sampler's samples shuffled inside each bucket (one in-place
shuffle per bucket, from ``(seed, epoch)``) plus one ``(bucket, number)``
pair per step, the steps shuffled from the same generator. Batch ``j`` of a
bucket is positions ``j * per .. (j + 1) * per`` of that bucket's shuffled
samples, so a batch is a slice, gathered only where it wraps around the
bucket's end (wrap-around padding on sharded runs). Random access and a
one-integer checkpoint follow, as for every plan.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from batchup import _rng
from batchup.samplers.plan import BatchPlan, PlanOptions, SeedRequiredError

if TYPE_CHECKING:  # the sampler imports this module
    from batchup.samplers.bucket import BucketSampler

__all__ = ["BucketPlan"]


def _deal(sizes: np.ndarray, limit: np.ndarray, ranks: int, drop_last: bool, remainder: str) -> tuple:
    """Return ``(steps, per)``: each bucket's steps of ``ranks`` batches and its samples per batch.

    * one rank: ``ceil(n_k / B_k)`` batches of ``B_k`` (the last keeps what is left);
    * ``drop_last``: only full batches of ``B_k``, in whole steps;
    * several ranks, ``remainder="pad"``: the fewest whole steps that hold the bucket at ``B_k``
      per batch, the bucket spread evenly over them (``ceil`` per batch, completed by wrap-around
      samples: fewer than one per batch);
    * several ranks, ``remainder="drop"``: whichever leaves out fewer samples of the bucket, those
      steps with ``floor`` per batch or one step fewer of full batches.
    """
    if drop_last:
        return (sizes // limit) // ranks, limit.copy()
    batches = -(-sizes // limit)
    if ranks == 1:
        return batches, limit.copy()
    steps = -(-batches // ranks)
    slots = steps * ranks
    if remainder == "pad":
        return steps, -(-sizes // np.maximum(slots, 1))
    # Leave out as few samples as possible: all the steps with the bucket spread evenly (floor), or
    # one step fewer of full batches (which always fit); no other choice keeps more.
    spread = sizes // np.maximum(slots, 1)
    fewer = np.maximum(steps - 1, 0)
    full_wins = fewer * limit >= steps * spread
    return np.where(full_wins, fewer, steps), np.where(full_wins, limit, spread)


class BucketPlan(BatchPlan):
    """The plan of a :class:`BucketSampler` run: batches of varying size, epoch after epoch.

    One epoch on this rank is :attr:`steps_per_epoch` batches; epoch ``e``
    of the run (sampler epoch ``options.epoch * repeats + e``) is computed
    from ``(seed, that epoch)`` when first asked for and kept (the last two).
    ``indices(b)`` is random access; ``padding(b)`` is the wrap-around mask
    on a sharded run.

    Users get a plan from :meth:`~batchup.sequences.BucketSampler.plan` (or a source's
    ``plan``) rather than build one.

    Parameters
    ----------
    sampler : BucketSampler
        The sampler whose buckets, batch sizes and ``repeats`` are planned.
    options : PlanOptions
        The validated options of the run. ``options.shuffle`` must already be
        ``None`` or a ``SeedKey`` (``BucketSampler.plan`` turns an RNG
        object into one), and ``drop_last``, ``shard`` and ``epoch`` mean what
        they mean for :meth:`~batchup.sequences.BucketSampler.plan`.
    check : bool, default True
        Keyword-only. Raise for a run that cannot work: several ranks with a
        seed drawn at random or from an RNG (``SeedRequiredError``), or a
        rank that gets no batch at all (``ValueError``). ``False`` only
        counts, as :meth:`~batchup.sequences.BucketSampler.batch_shapes` does.

    Raises
    ------
    SeedRequiredError
        With ``check=True``, for several ranks and a seed the ranks cannot share.
    ValueError
        For ``repeats=-1`` with no batch per epoch, and (with ``check=True``)
        for a sharded or ``drop_last`` run that leaves a rank no batch.
    """

    KIND = "bucket"

    def __init__(self, sampler: BucketSampler, options: PlanOptions, *, check: bool = True) -> None:
        self.sampler = sampler
        shard = options.shard
        self._ranks = 1 if shard is None else shard.num_shards
        self._rank = 0 if shard is None else shard.rank
        key = options.shuffle
        if check and self._ranks > 1 and isinstance(key, _rng.SeedKey) and key.drawn:
            raise SeedRequiredError(
                "sharding needs every rank to draw the same order, so shuffle must be an int seed shared across "
                "ranks (shuffle=<int>, or the sampler's seed=<int>); got a seed drawn at random or from an RNG"
            )
        self._remainder = "pad" if shard is None else shard.remainder
        self._groups, self._per = _deal(sampler.bucket_sizes, sampler.bucket_batch_sizes, self._ranks,
                                        options.drop_last, self._remainder)
        #: Whether each bucket's last batch keeps what is left (unsharded runs without ``drop_last``).
        self.keeps_short_batches = self._ranks == 1 and not options.drop_last
        #: Batches (steps) of one epoch on this rank.
        self.steps_per_epoch = int(self._groups.sum())
        repeats = sampler._repeats
        per_epoch = self.steps_per_epoch
        if repeats is None:
            if per_epoch == 0:
                raise ValueError("cannot repeat an empty set of batches forever (repeats=-1 with no batch per epoch)")
            count, samples = None, np.inf
        else:
            count = per_epoch * repeats
            samples = int(self._epoch_samples()) * repeats
            if check and per_epoch == 0 and len(sampler._members) and (shard is not None or options.drop_last):
                batches = int((-(-sampler.bucket_sizes // sampler.bucket_batch_sizes)).sum())
                why = [f"{len(sampler.bucket_sizes)} bucket(s) give {batches} batch(es) per epoch"]
                if shard is not None:
                    why.append(f"{self._ranks} ranks take them {self._ranks} at a time (remainder={shard.remainder!r})")
                if options.drop_last:
                    why.append("drop_last=True leaves out each bucket's short batch")
                raise ValueError(f"this plan gives no batch at all on a rank ({'; '.join(why)}); use fewer ranks, "
                                 "a smaller budget or batch size, or drop_last=False")
        self._repeats = repeats
        self._setup(options, None, count, samples)
        self.random_access = True
        self.first_epoch = options.epoch * (repeats or 0)
        self._cache: dict = {}

    # -- counting -----------------------------------------------------------------------
    def per_bucket_counts(self) -> np.ndarray:
        """Return the batches of each bucket one rank gets per epoch.

        Returns
        -------
        ndarray of int64, shape (buckets,)
            Entry ``k`` counts bucket ``k``'s batches on this rank in one epoch
            (after ``drop_last`` and sharding); the entries sum to
            ``steps_per_epoch``.
        """
        return self._groups.astype(np.int64)

    def per_bucket_batch_sizes(self) -> np.ndarray:
        """Return the samples per batch of each bucket (its last batch may be short when kept).

        Returns
        -------
        ndarray of int64, shape (buckets,)
            Entry ``k`` is the size of bucket ``k``'s batches: the sampler's
            ``bucket_batch_sizes[k]``, or on a sharded
            run the bucket spread evenly over its steps (``remainder="pad"``:
            rounded up; ``"drop"``: rounded down, or the full size when a step
            fewer leaves out fewer samples). Only an unsharded run without
            ``drop_last`` keeps a shorter last batch (``keeps_short_batches``).
        """
        return self._per.astype(np.int64)

    def _epoch_samples(self) -> int:
        """Samples (padding included) of one epoch on this rank, counted before ``drop_last``, as for every plan."""
        s = self.sampler
        if self._ranks == 1:
            return int(s.bucket_sizes.sum())
        groups, per = _deal(s.bucket_sizes, s.bucket_batch_sizes, self._ranks, False, self._remainder)
        return int((groups * per).sum())

    # -- one epoch ----------------------------------------------------------------------
    def _layout(self, e: int) -> tuple:
        """Return ``(members, buckets, numbers)`` of epoch ``e`` of this run on this rank (cached).

        ``members`` is the sampler's samples, bucket by bucket, shuffled inside every bucket;
        batch ``i`` of the epoch is batch ``numbers[i]`` of bucket ``buckets[i]``.
        """
        got = self._cache.get(e)
        if got is not None:
            return got
        key = self.options.shuffle
        out = self._draw(None if key is None else key.generator(self.first_epoch + e))
        if len(self._cache) >= 2:
            self._cache.clear()
        self._cache[e] = out
        return out

    def _draw(self, rng: Any) -> tuple:
        s = self.sampler
        members = s._members
        if rng is not None:
            members = members.copy()
            for start, size in zip(s._starts.tolist(), s.bucket_sizes.tolist()):
                rng.shuffle(members[start : start + size])
        # Every step of the epoch: (bucket, step number in the bucket), bucket by bucket.
        groups = self._groups
        bucket = np.repeat(np.arange(len(groups), dtype=np.int64), groups)
        first = np.concatenate([[0], np.cumsum(groups)[:-1]]).astype(np.int64)
        number = np.arange(len(bucket), dtype=np.int64) - np.repeat(first, groups)
        if rng is not None:
            order = rng.permutation(len(bucket))
            bucket, number = bucket[order], number[order]
        # This rank takes batch `rank` of every step.
        return members, bucket, number * self._ranks + self._rank

    def _positions(self, b: int) -> tuple:
        """Return ``(members, bucket start, bucket size, q0, q1)`` for batch ``b``.

        The batch is positions ``q0 .. q1`` of its bucket's shuffled samples; positions past
        the bucket's end wrap around to its start (padding on sharded runs).
        """
        e, i = divmod(int(b), self.steps_per_epoch)
        members, bucket, number = self._layout(e)
        k, j = int(bucket[i]), int(number[i])
        s = self.sampler
        per, size = int(self._per[k]), int(s.bucket_sizes[k])
        q0 = j * per
        q1 = min(q0 + per, size) if self.keeps_short_batches else q0 + per
        return members, int(s._starts[k]), size, q0, q1

    # -- BatchPlan --------------------------------------------------------------------
    def indices(self, b: int) -> np.ndarray:
        members, start, size, q0, q1 = self._positions(b)
        if q1 <= size:
            return members[start + q0 : start + q1].copy()
        return members[start + np.arange(q0, q1) % size]

    def padding(self, b: int) -> np.ndarray | None:
        if self._ranks == 1:
            return None
        _, _, size, q0, q1 = self._positions(b)
        return np.arange(q0, q1) >= size

    def _identity(self) -> dict:
        return self.sampler._plan_identity()

    def _geometry(self) -> dict:
        return {"steps_per_epoch": self.steps_per_epoch, "repeats": -1 if self._repeats is None else self._repeats}

    def reseeded(self, key: _rng.SeedKey) -> BucketPlan:
        return BucketPlan(self.sampler, dataclasses.replace(self.options, shuffle=key))
