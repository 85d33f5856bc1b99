"""Length bucketing: batches of samples of similar length, by count or by a token budget.

Padding a batch of variable-length samples to its longest sample wastes
compute on the padding; batches of similar lengths waste little.
:class:`BucketSampler` sorts the samples into length *buckets* once, when it
is built, and every epoch shuffles each bucket, cuts it into batches and
shuffles the batches of all buckets together. A bucket's batches all have
the same size (``batch_size``, or as many samples as fit a token budget when
padded to the bucket's longest sample), so every epoch has the same number
of batches and a batch's padded shape is one of a few known pairs
(:meth:`BucketSampler.batch_shapes`), which is what compiled models (XLA)
need. The plan (:class:`BucketPlan`) is a pure function of ``(seed,
epoch)``: random access, exact resume from one position, and rank sharding
in which every rank draws from the same bucket at every step.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np

from batchup import _rng
from batchup._checks import is_int, positive_int, repeats_value
from batchup.samplers import _buckets
from batchup.samplers.base import PlannedSampler
from batchup.samplers.bucket_plan import BucketPlan
from batchup.samplers.plan import PlanOptions

__all__ = ["BucketSampler"]


class BucketSampler(PlannedSampler):
    """Batch samples of similar length together: a fixed count per batch, or a token budget.

    Parameters
    ----------
    lengths : 1-D array-like of int, or a RaggedArray
        The length of every sample (a ``RaggedArray`` stands for its
        ``lengths``); indices run over ``range(len(lengths))``.
    batch_size : int, optional
        Keyword-only. Samples per batch.
    max_tokens : int, optional
        Keyword-only. The token budget of a batch, padding included: a
        bucket padded to length ``P`` gets ``max_tokens // P`` samples per
        batch, so ``len(batch) * P <= max_tokens``. With ``batch_size`` too,
        a batch holds at most ``batch_size`` samples *and* at most
        ``max_tokens`` tokens. At least one of the two is required.
    boundaries : 1-D array-like of int, optional
        Keyword-only. Increasing bucket edges: bucket ``k`` holds the
        samples with ``boundaries[k-1] < length <= boundaries[k]`` (the
        length rounded up to ``pad_to_multiple_of``), and the samples longer
        than the last edge form one more bucket. Without them the buckets
        are chosen automatically (see Notes).
    num_buckets : int, default 64
        Keyword-only. The most buckets the automatic choice may use.
    pad_to_multiple_of : int, optional
        Keyword-only. Batches will be padded to a multiple of this: a
        bucket's padded length is its longest sample rounded up to it, and
        the budget counts the rounded length.
    repeats : int, default 1
        Keyword-only. Epochs per iteration; ``-1`` repeats forever.
    seed : int, optional
        Keyword-only. Shuffle with this seed when ``batch_iterator`` is
        called without ``shuffle`` (an explicit ``shuffle`` wins). Without
        it, no ``shuffle`` means in order.
    drop_oversized : bool, default False
        Keyword-only. Leave out the samples that alone exceed
        ``max_tokens`` (their indices are in :attr:`dropped`) instead of
        raising ``ValueError``.

    Attributes
    ----------
    length : int
        The number of samples (``len(lengths)``).
    batch_size : int or None
        ``batch_size`` when it is the only limit, else ``None`` (sizes vary).
    boundaries : ndarray of int64
        The bucket edges in use (given or chosen).
    bucket_lengths : ndarray of int64
        The padded length of every non-empty bucket, strictly increasing
        (buckets that would pad to the same length are one bucket).
    bucket_batch_sizes : ndarray of int64
        Samples per batch of every bucket.
    bucket_sizes : ndarray of int64
        Samples in every bucket.
    dropped : ndarray of int64
        The samples left out by ``drop_oversized`` (empty otherwise).
    batches_per_epoch : int
        Batches in one unsharded epoch (the same every epoch).

    Raises
    ------
    TypeError
        If ``lengths`` or ``boundaries`` are not integers, or an option has
        the wrong type.
    ValueError
        If ``lengths`` is not 1-D or holds a length below 1 (the message
        names the sample), neither ``batch_size`` nor ``max_tokens`` is
        given, a sample is longer than ``max_tokens`` allows (named, unless
        ``drop_oversized=True``), ``boundaries`` are empty, not positive or
        not increasing, ``drop_oversized`` is given without ``max_tokens``,
        or ``repeats`` is invalid.

    See Also
    --------
    batchup.sequences.PadToBucket : pad every batch to its bucket's length.
    batchup.sequences.pack_sequences : several samples per row instead of buckets.

    Notes
    -----
    *An epoch.* Bucket ``k`` is shuffled and cut into batches of
    :attr:`bucket_batch_sizes` ``[k]`` samples (its last batch may be
    short); then the batches of all buckets are shuffled together. Every
    sample appears exactly once per epoch, and every epoch has
    :attr:`batches_per_epoch` batches. Without a seed, buckets come in
    increasing length and samples in index order. ``drop_last=True``
    leaves out each bucket's short batch (and, on several ranks, a
    bucket's last step if it is incomplete), so every batch of bucket
    ``k`` has the shape ``(bucket_batch_sizes[k], bucket_lengths[k])``.

    *Automatic buckets* minimise the padded size of the epoch: the tokens
    of all batches padded to their bucket's length, counting each bucket's
    short last batch as full (a dynamic programme over the distinct
    lengths, or over 512 length quantiles when there are more). Large data
    sets get narrow buckets (little padding); small ones get few buckets
    (few short batches).

    *Sharding* (``shard=(rank, n)``) deals whole batches: each bucket is
    cut into steps of ``n`` batches, the steps are shuffled, and rank ``r``
    takes batch ``r`` of every step, so at every step all ranks hold
    batches of the same bucket and the same size. A bucket gets the fewest
    whole steps that hold it at ``bucket_batch_sizes[k]`` samples per
    batch, and its samples are spread evenly over them: with
    ``remainder="pad"`` (the default) every batch gets
    ``ceil(n_k / batches)`` samples and the last ones are completed with
    samples from the start of the bucket (:meth:`BucketPlan.padding` marks
    them; fewer than one per batch); with ``remainder="drop"`` nothing
    repeats: every batch gets ``floor(n_k / batches)`` samples, or the
    bucket gets one step fewer of full batches if that leaves out fewer,
    and the rest of the bucket (a different few every epoch) is left out.
    ``split`` has no effect (steps are dealt out whole).

    *Randomness.* Epoch ``e`` is drawn from ``(seed, e)`` alone. A
    ``RandomState`` or ``Generator`` given as ``shuffle`` (or
    ``shuffle=True``, the global NumPy RNG) is drawn from once per plan to
    pick an int seed, so its batches are reproducible from the RNG's state,
    and a checkpoint carries the picked seed (ranks cannot share such a
    seed: sharding needs an int). Plans are reproducible for a given NumPy
    version.

    Examples
    --------
    >>> lengths = np.array([3, 9, 4, 10, 3, 8, 2, 9])
    >>> sampler = BucketSampler(lengths, max_tokens=20, boundaries=[4])
    >>> sampler.bucket_lengths.tolist(), sampler.bucket_batch_sizes.tolist()
    ([4, 10], [5, 2])
    >>> for b in sampler.plan(None, shuffle=0).iterator():
    ...     print(b.tolist(), lengths[b].tolist())
    [5, 3] [8, 10]
    [1, 7] [9, 9]
    [2, 0, 6, 4] [4, 3, 2, 3]

    In a source, the sampler sets the batch size:

    >>> from batchup.sources import ArrayDataSource
    >>> ds = ArrayDataSource([lengths], sampler=sampler)
    >>> [x.tolist() for (x,) in ds.batch_iterator(batch_size=None)]
    [[3, 4, 3, 2], [9, 10], [8, 9]]
    """

    def __init__(
        self,
        lengths: Any,
        *,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        boundaries: Any = None,
        num_buckets: int = 64,
        pad_to_multiple_of: int | None = None,
        repeats: int = 1,
        seed: int | None = None,
        drop_oversized: bool = False,
    ) -> None:
        lens = _buckets.check_lengths(lengths)
        if batch_size is None and max_tokens is None:
            raise ValueError("BucketSampler needs batch_size (samples per batch) or max_tokens (a token budget)")
        self._count = None if batch_size is None else positive_int("batch_size", batch_size)
        self.max_tokens = None if max_tokens is None else positive_int("max_tokens", max_tokens)
        self.num_buckets = positive_int("num_buckets", num_buckets)
        self.pad_to_multiple_of = None if pad_to_multiple_of is None else positive_int(
            "pad_to_multiple_of", pad_to_multiple_of)
        self._repeats = repeats_value(repeats)
        self.repeats = repeats
        if seed is not None and not is_int(seed):
            raise TypeError(f"seed must be None or an int, got {seed!r}")
        self.seed = None if seed is None else _rng.SeedKey(int(seed))
        if not isinstance(drop_oversized, (bool, np.bool_)):
            raise TypeError(f"drop_oversized must be True or False, got {drop_oversized!r}")
        if drop_oversized and self.max_tokens is None:
            raise ValueError("drop_oversized=True needs max_tokens: without a token budget no sample is too long")
        self.length = len(lens)
        self.batch_size = self._count if self.max_tokens is None else None
        rounded = _buckets.round_up(lens, self.pad_to_multiple_of)
        keep = np.ones(len(lens), bool)
        if self.max_tokens is not None:
            keep = rounded <= self.max_tokens
            if not keep.all() and not drop_oversized:
                raise ValueError(self._oversized_message(lens, rounded, ~keep))
        self.dropped = np.flatnonzero(~keep).astype(np.int64)
        kept = np.flatnonzero(keep).astype(np.int64)
        if boundaries is None:
            self.boundaries = _buckets.optimal_edges(rounded[kept], self.num_buckets, self._sizes_for)
        else:
            self.boundaries = _buckets.check_boundaries(boundaries)
        # A bucket is padded to its longest sample (rounded); buckets that pad alike are one bucket.
        which = _buckets.assign(rounded[kept], self.boundaries)
        longest = np.zeros(len(self.boundaries) + 1, np.int64)
        np.maximum.at(longest, which, rounded[kept])
        padded = longest[which]
        order = np.argsort(padded, kind="stable")
        bucket_lengths, starts, counts = np.unique(padded[order], return_index=True, return_counts=True)
        #: Sample indices bucket by bucket (index order inside a bucket).
        self._members = kept[order]
        self._starts = starts.astype(np.int64)
        self.bucket_sizes = counts.astype(np.int64)
        self.bucket_lengths = bucket_lengths.astype(np.int64)
        self.bucket_batch_sizes = self._sizes_for(self.bucket_lengths)
        self.batches_per_epoch = int((-(-self.bucket_sizes // self.bucket_batch_sizes)).sum())
        layout = np.concatenate([lens, self.boundaries, self.bucket_batch_sizes, self.bucket_lengths])
        self._digest = zlib.crc32(np.ascontiguousarray(layout, dtype=np.int64).tobytes())

    # -- construction helpers -----------------------------------------------------------
    def _sizes_for(self, padded: np.ndarray) -> np.ndarray:
        """Return the batch size of buckets padded to ``padded``."""
        big = np.iinfo(np.int64).max
        sizes = np.full(len(padded), self._count or big, dtype=np.int64)
        if self.max_tokens is not None:
            sizes = np.minimum(sizes, self.max_tokens // np.maximum(padded, 1))
        return sizes

    def _oversized_message(self, lens: np.ndarray, rounded: np.ndarray, bad: np.ndarray) -> str:
        i = int(np.argmax(bad))
        more = int(bad.sum()) - 1
        rounding = f" ({int(rounded[i])} rounded up to pad_to_multiple_of={self.pad_to_multiple_of})" if (
            rounded[i] != lens[i]) else ""
        others = f" ({more} more sample{'s' if more > 1 else ''} too)" if more else ""
        return (
            f"sample {i} has length {int(lens[i])}{rounding}, more than max_tokens={self.max_tokens}: no batch "
            f"can hold it{others}; raise max_tokens, or pass drop_oversized=True to leave such samples out"
        )

    # -- the sampler protocol -------------------------------------------------------------
    def num_indices_generated(self) -> Any:
        if self._repeats is None:
            return np.inf if len(self._members) else 0
        return len(self._members) * self._repeats

    def plan(
        self, batch_size: Any, shuffle: Any = None, *, drop_last: bool = False, shard: Any = None, epoch: int = 0
    ) -> BucketPlan:
        """Return the plan of one run; ``batch_size`` must be ``None`` (or the sampler's own ``batch_size``).

        ``shuffle=None`` uses the sampler's ``seed`` (in order without one);
        an RNG object is drawn from once for an int seed.

        Parameters
        ----------
        batch_size : None or int
            ``None`` (the sampler sets every bucket's batch size); an int is
            accepted only when it equals the sampler's ``batch_size``
            (``batch_size`` given without ``max_tokens``).
        shuffle : None, bool, int, SeedKey, RandomState or Generator, default None
            ``None`` or ``False`` uses the sampler's ``seed`` (in order
            without one); an int seeds every epoch's order from ``(seed,
            epoch)``; ``True`` (the global NumPy RNG) or an RNG object is
            drawn from once, here, for an int seed.
        drop_last : bool, default False
            Keyword-only. Leave out each bucket's short last batch (and, on
            several ranks, a bucket's incomplete last step), so every batch of
            a bucket has the same size.
        shard : None, (rank, num_shards) or ShardSpec, default None
            Keyword-only. This rank's part of every epoch: rank ``r`` takes
            batch ``r`` of every step of ``num_shards`` batches of one bucket
            (see Notes of the class); the spec's ``remainder`` says whether an
            incomplete bucket is padded by wrap-around or left out.
        epoch : int, default 0
            Keyword-only. Which pass over the data: pass ``e`` covers the
            sampler's epochs ``e * repeats .. e * repeats + repeats - 1`` (see
            :class:`~batchup.samplers.plan.PlanOptions`).

        Returns
        -------
        BucketPlan
            The run's batches (``repeats`` epochs of
            ``BucketPlan.steps_per_epoch`` batches on this rank, endless
            for ``repeats=-1``), with random access by batch number.

        Raises
        ------
        ValueError
            For a ``batch_size`` that is not the sampler's, an impossible
            shard or one that leaves a rank no batch.
        SeedRequiredError
            For sharding with a seed that ranks cannot share (drawn from an
            RNG object or at random).
        """
        if batch_size is not None and not (is_int(batch_size) and batch_size == self.batch_size):
            own = "None" if self.batch_size is None else f"None or {self.batch_size}"
            limits = []
            if self._count is not None:
                limits.append(f"batch_size={self._count}")
            if self.max_tokens is not None:
                limits.append(f"max_tokens={self.max_tokens}")
            raise ValueError(
                f"BucketSampler sets the batch size itself ({', '.join(limits)}), so batch_size must be {own}; "
                f"got batch_size={batch_size!r}"
            )
        options = PlanOptions.make(shuffle, drop_last, shard, epoch)
        if options.shuffle is None and self.seed is not None:
            options = dataclasses.replace(options, shuffle=self.seed)
        elif options.shuffle is not None and not options.seeded:
            options = dataclasses.replace(options, shuffle=_buckets.seed_from_rng(options.shuffle))
        return BucketPlan(self, options)

    def batch_shapes(self, *, drop_last: bool = False, shard: Any = None) -> list:
        """Return the ``(samples, padded length)`` pairs the batches of a run can have, sorted.

        A compiled model sees at most these shapes when every batch is
        padded to its bucket's length (:class:`~batchup.sequences.PadToBucket`):
        one per bucket with ``drop_last=True`` or several ranks, at most two
        per bucket otherwise.

        Parameters
        ----------
        drop_last : bool, default False
            Keyword-only. The shapes of a run with this ``drop_last`` (no
            short last batch per bucket when ``True``).
        shard : None, (rank, num_shards) or ShardSpec, default None
            Keyword-only. The shapes of one rank's part of a sharded run; every
            rank sees the same shapes, and no seed is needed to ask.

        Returns
        -------
        list of (int, int)
            The distinct ``(batch size, bucket's padded length)`` pairs, in
            increasing order; a bucket that gives no batch (all dropped) adds
            none.

        Examples
        --------
        >>> sampler = BucketSampler([3, 9, 4, 10, 3, 8, 2, 9], max_tokens=20, boundaries=[4])
        >>> sampler.batch_shapes()
        [(2, 10), (4, 4)]
        >>> sampler.batch_shapes(drop_last=True)
        [(2, 10)]
        """
        plan = BucketPlan(self, PlanOptions.make(None, drop_last, shard, 0), check=False)
        sizes, per_batch = self.bucket_sizes, plan.per_bucket_batch_sizes()
        full = sizes // per_batch if plan.keeps_short_batches else plan.per_bucket_counts()
        shapes = {(int(per_batch[k]), int(self.bucket_lengths[k])) for k in np.flatnonzero(full)}
        if plan.keeps_short_batches:
            short = sizes % per_batch
            shapes |= {(int(short[k]), int(self.bucket_lengths[k])) for k in np.flatnonzero(short)}
        return sorted(shapes)

    def _plan_identity(self) -> dict:
        """Return the fields that identify this sampler in a checkpoint (JSON values)."""
        return {
            "sampler": "bucket", "length": self.length, "batch_size": self._count, "max_tokens": self.max_tokens,
            "pad_to_multiple_of": self.pad_to_multiple_of, "buckets": len(self.bucket_sizes),
            "layout_crc": self._digest,
        }

    def __repr__(self) -> str:
        limits = [f"batch_size={self._count}"] if self._count is not None else []
        if self.max_tokens is not None:
            limits.append(f"max_tokens={self.max_tokens}")
        dropped = f", {len(self.dropped)} dropped" if len(self.dropped) else ""
        return (f"BucketSampler(<{self.length} lengths, {len(self.bucket_sizes)} buckets{dropped}>, "
                f"{', '.join(limits)}, repeats={self.repeats})")
