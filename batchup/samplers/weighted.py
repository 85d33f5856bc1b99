"""Draw indices in proportion to per-sample weights.

Weighted sampling suits class imbalance: :meth:`WeightedSampler.class_balancing_sampler`
gives every class present the same total weight. By default the stream is
endless and drawn with replacement, exactly as in BatchUp 0.2, so
``num_batches`` / ``batch_map_*`` need an explicit batch count. With
``num_samples=`` (or ``replace=False``) the sampler has finite epochs of
``num_samples`` indices instead, drawn with or without replacement, so
iterators have a ``len()`` and ``batch_map_*`` need no batch count.
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from batchup import _rng
from batchup._checks import index_array
from batchup.samplers.base import PlannedSampler
from batchup.samplers.flat import FlatPlan
from batchup.samplers.plan import BatchPlan, PlanOptions
from batchup.samplers.stream import StreamPlan
from batchup.samplers.weighted_epochs import EpochOptions, draw_epoch

__all__ = [
    "WeightedSampler",
    "WeightedSubsetSampler",
    "class_balancing_weights",
]


def _check_weights(name: str, weights: Any) -> np.ndarray:
    w = np.asarray(weights)
    if w.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of weights, got an array of shape {w.shape}")
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {w.dtype}")
    w = w.astype(float)
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} must be finite and non-negative; {name}[{i}] is {w[i]!r}")
    if w.sum() == 0.0:
        raise ValueError(f"{name} sum to 0; at least one weight must be positive")
    return w


def class_balancing_weights(y: Any, n_classes: Any = None) -> np.ndarray:
    """Return per-sample weights that give each class present the same total.

    The weight of sample ``i`` is ``1.0 / (count[y[i]] * K)``, where ``K`` is
    the number of distinct labels in ``y``; the weights sum to 1. ``n_classes``
    only sets the minimum length of the label count.

    Parameters
    ----------
    y : 1-D array-like of int
        Class labels, ``>= 0``.
    n_classes : int, optional
        The number of classes (at least ``max(y) + 1``); classes absent from
        ``y`` get no weight either way.

    Returns
    -------
    numpy.ndarray
        float64 weights, one per sample of ``y``, summing to 1.

    Raises
    ------
    ValueError
        If ``y`` is empty, not 1-D, or holds negative or non-integer labels.

    Examples
    --------
    >>> class_balancing_weights([0, 0, 0, 1]).tolist()
    [0.16666666666666666, 0.16666666666666666, 0.16666666666666666, 0.5]
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0 or y.dtype.kind not in "iu":
        raise ValueError(
            f"y must be non-empty 1-D integer labels, got shape {y.shape} and dtype {y.dtype}"
        )
    if y.min() < 0:
        raise ValueError(f"y must hold non-negative integer labels, found {int(y.min())}")
    counts = np.bincount(y, minlength=0 if n_classes is None else int(n_classes))
    n_present = int(np.count_nonzero(counts))
    return 1.0 / (counts[y] * n_present)


class WeightedSampler(PlannedSampler):
    """Draw indices of ``range(len(weights))`` by weight, endlessly or in epochs.

    Parameters
    ----------
    weights : 1-D array-like of float
        Non-negative, finite weights; they are normalised to sum to 1 and
        kept in the ``weights`` attribute. Zero-weight samples are never drawn.
    num_samples : int, optional
        Keyword-only. Draw finite epochs of ``num_samples`` indices. ``None``
        (the default, with ``replace=True``) gives BatchUp 0.2's endless stream.
    replace : bool, default True
        Keyword-only. ``False`` draws the indices of an epoch without
        replacement (all distinct); ``num_samples`` then defaults to the
        number of positive weights and may not exceed it.
    repeats : int, default 1
        Keyword-only. Epochs per iteration (``-1``: forever); only with
        finite epochs.

    Raises
    ------
    ValueError
        If the weights are not 1-D, are negative, NaN or infinite, or sum to 0;
        if ``num_samples`` is not positive or, without replacement, exceeds the
        number of positive weights; if ``repeats`` is invalid or given without
        finite epochs.
    TypeError
        If ``num_samples`` is not an int or ``replace`` is not a bool.

    Notes
    -----
    In-order iteration is impossible (``NotImplementedError``): pass ``shuffle``.

    *Endless stream (default).* With a ``RandomState`` every batch is
    ``rng.choice(n, size=(bs,), p=weights)``, exactly as in BatchUp 0.2
    (computed through an equivalent cached CDF); with an int seed batch ``b``
    depends only on ``(seed, b)``.

    *Finite epochs.* An iteration is ``repeats`` epochs of ``num_samples``
    indices each, cut into batches like the standard sampler (batches run
    across epoch boundaries; only the last batch of the run is short, or
    dropped with ``drop_last=True``), so ``len()`` and ``num_samples()``
    are known. With replacement every index is drawn independently with
    probability ``weights[i]``. Without replacement an epoch is a weighted
    random ordering (Efraimidis-Spirakis keys ``u ** (1 / w)``): its first
    index is drawn with probability ``weights[i]``, each next one in
    proportion to the weights of those not drawn yet; ``num_samples``
    smaller than the number of positive weights keeps the first
    ``num_samples``. With an int seed epoch ``e`` depends only on
    ``(seed, e)``, so a checkpoint is a few integers; with a ``RandomState``
    or ``Generator`` each epoch is drawn from it when it starts. Streams are
    reproducible for a given NumPy version.

    Examples
    --------
    >>> sampler = WeightedSampler([0.0, 1.0, 0.0, 1.0])
    >>> it = sampler.shuffled_indices_batch_iterator(6, 0)
    >>> sorted(set(next(it).tolist()))
    [1, 3]

    Finite epochs without replacement: every epoch is a weighted ordering of
    the indices with a positive weight.

    >>> sampler = WeightedSampler([5.0, 0.0, 1.0, 2.0], replace=False, repeats=2)
    >>> sampler.num_indices_generated()
    6
    >>> it = sampler.shuffled_indices_batch_iterator(4, 0)
    >>> len(it)
    2
    >>> [sorted(b.tolist()) for b in it]
    [[0, 0, 2, 3], [2, 3]]
    """

    def __init__(self, weights: Any, *, num_samples: Any = None, replace: bool = True, repeats: int = 1) -> None:
        w = _check_weights("weights", weights)
        self.weights = w / w.sum()
        self._raw = w  # before normalising: a tiny positive weight may underflow to 0 there
        self.length = len(self.weights)
        self._cdf = _cdf(self.weights)
        self._epochs = EpochOptions(self._raw, num_samples, replace, repeats)
        self.num_samples = self._epochs.num_samples
        self.replace = self._epochs.replace
        self.repeats = repeats

    def num_indices_generated(self) -> Any:
        return self._epochs.count()

    def plan(
        self, batch_size: Any, shuffle: Any = None, *, drop_last: bool = False, shard: Any = None, epoch: int = 0
    ) -> BatchPlan:
        """Return the endless stream's plan, or the finite epochs' plan when ``num_samples`` is set.

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        shuffle : None, bool, int, SeedKey, RandomState or Generator
            An int seed (the draws of batch ``b``, or of epoch ``e`` with
            ``num_samples``, depend only on the seed and that number), ``True``
            or an RNG object to draw from. ``None`` raises
            ``NotImplementedError``: weighted samplers cannot go in order.
        drop_last : bool, default False
            Keyword-only. Leave out a final short batch (finite epochs only).
        shard : None, (rank, num_shards) or ShardSpec
            Keyword-only. This rank's part of every epoch.
        epoch : int, default 0
            Keyword-only. Which pass over the data (see
            :class:`~batchup.samplers.plan.PlanOptions`).

        Returns
        -------
        BatchPlan
            A :class:`~batchup.samplers.StreamPlan` (endless) or, with ``num_samples``,
            a :class:`~batchup.samplers.FlatPlan` of ``repeats`` drawn epochs.
        """
        return _plan(self.weights, self._raw, self._cdf, None, self._epochs, batch_size,
                     PlanOptions.make(shuffle, drop_last, shard, epoch), "weighted")

    @staticmethod
    def class_balancing_sample_weights(y: Any, n_classes: Any = None) -> np.ndarray:
        """Return class-balancing weights for labels ``y`` (see :func:`class_balancing_weights`).

        Parameters
        ----------
        y : 1-D array-like of int
            Class labels, ``>= 0``.
        n_classes : int, optional
            The number of classes (at least ``max(y) + 1``).

        Returns
        -------
        numpy.ndarray
            float64 weights, one per sample, summing to 1.
        """
        return class_balancing_weights(y, n_classes)

    @staticmethod
    def class_balancing_sampler(y: Any, n_classes: Any = None, **epochs: Any) -> WeightedSampler:
        """Return a ``WeightedSampler`` that balances the classes in ``y``.

        Parameters
        ----------
        y : 1-D array-like of int
            Class labels, ``>= 0``.
        n_classes : int, optional
            The number of classes (at least ``max(y) + 1``).
        **epochs
            ``num_samples``, ``replace`` and ``repeats``, keyword-only, as for
            :class:`WeightedSampler`; without them the stream is endless.

        Returns
        -------
        WeightedSampler
            Weighted by :func:`class_balancing_weights`: every class present
            is drawn equally often on average.
        """
        return WeightedSampler(class_balancing_weights(y, n_classes), **epochs)

    def __repr__(self) -> str:
        if self.num_samples is None:
            return f"WeightedSampler(<{self.length} weights>)"
        return (
            f"WeightedSampler(<{self.length} weights>, num_samples={self.num_samples}, "
            f"replace={self.replace}, repeats={self.repeats})"
        )


class WeightedSubsetSampler(PlannedSampler):
    """Draw indices from the subset ``indices`` by ``sub_weights``, endlessly or in epochs.

    Parameters
    ----------
    sub_weights : 1-D array-like of float
        One weight per entry of ``indices``.
    indices : 1-D array-like of int
        The absolute indices of the subset.
    num_samples, replace, repeats
        Keyword-only finite-epoch options, as in :class:`WeightedSampler`.

    Raises
    ------
    ValueError
        If the lengths differ (checked first), the weights are invalid, or an
        epoch option is invalid (see :class:`WeightedSampler`).

    Examples
    --------
    >>> sampler = WeightedSubsetSampler([1.0, 0.0], indices=[4, 9])
    >>> next(sampler.shuffled_indices_batch_iterator(3, 0)).tolist()
    [4, 4, 4]
    >>> sampler = WeightedSubsetSampler([1.0, 0.0, 3.0], indices=[4, 9, 7], replace=False)
    >>> sorted(next(sampler.shuffled_indices_batch_iterator(3, 0)).tolist())
    [4, 7]
    """

    def __init__(
        self, sub_weights: Any, indices: Any, *, num_samples: Any = None, replace: bool = True, repeats: int = 1
    ) -> None:
        if len(sub_weights) != len(indices):
            raise ValueError(
                f"sub_weights and indices must have the same length, got {len(sub_weights)} "
                f"and {len(indices)}"
            )
        w = _check_weights("sub_weights", sub_weights)
        self.sub_weights = w / w.sum()
        self._raw = w
        self.indices = index_array("indices", indices)
        self._base = self.indices.astype(np.int64)
        self.length = len(self.indices)
        self._cdf = _cdf(self.sub_weights)
        self._epochs = EpochOptions(self._raw, num_samples, replace, repeats)
        self.num_samples = self._epochs.num_samples
        self.replace = self._epochs.replace
        self.repeats = repeats

    def num_indices_generated(self) -> Any:
        return self._epochs.count()

    def map_indices(self, indices: Any) -> Any:
        return self.indices[indices]

    def plan(
        self, batch_size: Any, shuffle: Any = None, *, drop_last: bool = False, shard: Any = None, epoch: int = 0
    ) -> BatchPlan:
        """Return the endless stream's plan, or the finite epochs' plan when ``num_samples`` is set.

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        shuffle : None, bool, int, SeedKey, RandomState or Generator
            An int seed (the draws of batch ``b``, or of epoch ``e`` with
            ``num_samples``, depend only on the seed and that number), ``True``
            or an RNG object to draw from. ``None`` raises
            ``NotImplementedError``: weighted samplers cannot go in order.
        drop_last : bool, default False
            Keyword-only. Leave out a final short batch (finite epochs only).
        shard : None, (rank, num_shards) or ShardSpec
            Keyword-only. This rank's part of every epoch.
        epoch : int, default 0
            Keyword-only. Which pass over the data (see
            :class:`~batchup.samplers.plan.PlanOptions`).

        Returns
        -------
        BatchPlan
            A :class:`~batchup.samplers.StreamPlan` (endless) or, with ``num_samples``,
            a :class:`~batchup.samplers.FlatPlan` of ``repeats`` drawn epochs; the indices
            are absolute (members of ``indices``).
        """
        return _plan(self.sub_weights, self._raw, self._cdf, self._base, self._epochs, batch_size,
                     PlanOptions.make(shuffle, drop_last, shard, epoch), "weighted_subset")

    @staticmethod
    def class_balancing_sampler(y: Any, indices: Any, **epochs: Any) -> WeightedSubsetSampler:
        """Return a sampler over ``indices`` that balances the classes of ``y[indices]``.

        Parameters
        ----------
        y : 1-D array-like of int
            Class labels of the whole data set, ``>= 0``.
        indices : 1-D array-like of int
            The subset to draw from; only ``y[indices]`` is balanced.
        **epochs
            ``num_samples``, ``replace`` and ``repeats``, keyword-only, as for
            :class:`WeightedSubsetSampler`.

        Returns
        -------
        WeightedSubsetSampler
            Every class present in ``y[indices]`` gets the same total weight.
        """
        indices = index_array("indices", indices, len(y))
        return WeightedSubsetSampler(class_balancing_weights(np.asarray(y)[indices]), indices=indices, **epochs)

    def __repr__(self) -> str:
        return f"WeightedSubsetSampler(<{self.length} indices>)"


_IN_ORDER = (
    "in-order iteration is not supported by weighted samplers; pass shuffle "
    "(True, an int seed or a RandomState)"
)


def _plan(
    p: np.ndarray, raw: np.ndarray, cdf: np.ndarray, base: Any, epochs: EpochOptions, batch_size: Any,
    options: PlanOptions, name: str,
) -> BatchPlan:
    if options.shuffle is None:
        raise NotImplementedError(_IN_ORDER)
    identity = {"sampler": name, "length": len(p), "weights_crc": zlib.crc32(np.ascontiguousarray(p).tobytes())}
    if base is not None:
        identity["indices_crc"] = zlib.crc32(np.ascontiguousarray(base).tobytes())
    if epochs.num_samples is None:
        return StreamPlan(p, cdf, base, batch_size, options, identity)
    rng = options.shuffle
    if not isinstance(rng, _rng.SeedKey) and not callable(getattr(_rng.legacy(rng), "random", None)):
        raise TypeError(f"shuffle must be an int seed, a RandomState or a Generator here, got {rng!r}")
    k, replace = epochs.num_samples, epochs.replace

    def draw(gen: Any) -> np.ndarray:
        order = draw_epoch(_rng.legacy(gen), raw, cdf, k, replace)
        return order if base is None else base[order]

    identity.update(num_samples=k, replace=replace)
    return FlatPlan(draw, k, batch_size, epochs.repeats, options, identity=identity)


def _cdf(p: np.ndarray) -> np.ndarray:
    # The same arithmetic as RandomState.choice / Generator.choice, so that
    # searchsorted on uniform draws reproduces their results bit for bit.
    cdf = p.cumsum()
    cdf /= cdf[-1]
    return cdf
