"""Draw indices with replacement in proportion to per-sample weights.

Weighted sampling suits class imbalance: :meth:`WeightedSampler.class_balancing_sampler`
gives every class present the same total weight. The stream is endless;
``num_batches`` / ``batch_map_*`` therefore need an explicit batch count.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchup import _rng
from batchup._checks import index_array, positive_int
from batchup._iterator import StatefulIterator, check_state
from batchup.samplers.base import AbstractSampler

__all__ = ["WeightedIndexBatchIterator", "WeightedSampler", "WeightedSubsetSampler", "class_balancing_weights"]


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


class WeightedSampler(AbstractSampler):
    """Draw indices of ``range(len(weights))`` with replacement, by weight.

    Parameters
    ----------
    weights : 1-D array-like of float
        Non-negative, finite weights; they are normalised to sum to 1 and
        kept in the ``weights`` attribute. Zero-weight samples are never drawn.

    Raises
    ------
    ValueError
        If the weights are not 1-D, are negative, NaN or infinite, or sum to 0.

    Notes
    -----
    In-order iteration is impossible (``NotImplementedError``): pass ``shuffle``.
    With a ``RandomState`` every batch is ``rng.choice(n, size=(bs,), p=weights)``,
    exactly as in BatchUp 0.2 (computed through an equivalent cached CDF); with
    an int seed batch ``b`` depends only on ``(seed, b)``.

    Examples
    --------
    >>> sampler = WeightedSampler([0.0, 1.0, 0.0, 1.0])
    >>> it = sampler.shuffled_indices_batch_iterator(6, 0)
    >>> sorted(set(next(it).tolist()))
    [1, 3]
    """

    def __init__(self, weights: Any) -> None:
        w = _check_weights("weights", weights)
        self.weights = w / w.sum()
        self.length = len(self.weights)
        self._cdf = _cdf(self.weights)

    def num_indices_generated(self) -> Any:
        return np.inf

    def in_order_indices_batch_iterator(self, batch_size: int, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "in-order iteration is not supported by weighted samplers; pass shuffle "
            "(True, an int seed or a RandomState)"
        )

    def shuffled_indices_batch_iterator(self, batch_size: int, shuffle_rng: Any, **kwargs: Any) -> "WeightedIndexBatchIterator":
        return WeightedIndexBatchIterator(self.weights, self._cdf, None, batch_size, _rng.resolve_shuffle(shuffle_rng))

    @staticmethod
    def class_balancing_sample_weights(y: Any, n_classes: Any = None) -> np.ndarray:
        """Return class-balancing weights for labels ``y`` (see :func:`class_balancing_weights`)."""
        return class_balancing_weights(y, n_classes)

    @staticmethod
    def class_balancing_sampler(y: Any, n_classes: Any = None) -> "WeightedSampler":
        """Return a ``WeightedSampler`` that balances the classes in ``y``."""
        return WeightedSampler(class_balancing_weights(y, n_classes))

    def __repr__(self) -> str:
        return f"WeightedSampler(<{self.length} weights>)"


class WeightedSubsetSampler(AbstractSampler):
    """Draw indices from the subset ``indices`` with replacement, by ``sub_weights``.

    Parameters
    ----------
    sub_weights : 1-D array-like of float
        One weight per entry of ``indices``.
    indices : 1-D array-like of int
        The absolute indices of the subset.

    Raises
    ------
    ValueError
        If the lengths differ (checked first) or the weights are invalid.

    Examples
    --------
    >>> sampler = WeightedSubsetSampler([1.0, 0.0], indices=[4, 9])
    >>> next(sampler.shuffled_indices_batch_iterator(3, 0)).tolist()
    [4, 4, 4]
    """

    def __init__(self, sub_weights: Any, indices: Any) -> None:
        if len(sub_weights) != len(indices):
            raise ValueError(
                f"sub_weights and indices must have the same length, got {len(sub_weights)} "
                f"and {len(indices)}"
            )
        w = _check_weights("sub_weights", sub_weights)
        self.sub_weights = w / w.sum()
        self.indices = index_array("indices", indices)
        self.length = len(self.indices)
        self._cdf = _cdf(self.sub_weights)

    def num_indices_generated(self) -> Any:
        return np.inf

    def map_indices(self, indices: Any) -> Any:
        return self.indices[indices]

    def in_order_indices_batch_iterator(self, batch_size: int, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "in-order iteration is not supported by weighted samplers; pass shuffle"
        )

    def shuffled_indices_batch_iterator(self, batch_size: int, shuffle_rng: Any, **kwargs: Any) -> "WeightedIndexBatchIterator":
        return WeightedIndexBatchIterator(
            self.sub_weights, self._cdf, self.indices, batch_size, _rng.resolve_shuffle(shuffle_rng)
        )

    @staticmethod
    def class_balancing_sampler(y: Any, indices: Any) -> "WeightedSubsetSampler":
        """Return a sampler over ``indices`` that balances the classes of ``y[indices]``."""
        indices = index_array("indices", indices, len(y))
        return WeightedSubsetSampler(class_balancing_weights(np.asarray(y)[indices]), indices=indices)

    def __repr__(self) -> str:
        return f"WeightedSubsetSampler(<{self.length} indices>)"


def _cdf(p: np.ndarray) -> np.ndarray:
    # The same arithmetic as RandomState.choice / Generator.choice, so that
    # searchsorted on uniform draws reproduces their results bit for bit.
    cdf = p.cumsum()
    cdf /= cdf[-1]
    return cdf


class WeightedIndexBatchIterator(StatefulIterator):
    """Endless batches of indices drawn with replacement from a CDF.

    Batch ``b`` of a seeded run uses its own generator derived from
    ``(seed, b)``, so the state is a single counter.
    """

    KIND = "weighted"

    def __init__(self, p: np.ndarray, cdf: np.ndarray, base: np.ndarray | None, batch_size: int, rng: Any) -> None:
        if rng is None:
            raise NotImplementedError(
                "in-order iteration is not supported by weighted samplers; pass shuffle"
            )
        self._p = p
        self._cdf = cdf
        self._base = base
        self._bs = positive_int("batch_size", batch_size)
        self._rng = rng
        self._batches = 0
        legacy = np.random.mtrand._rand if rng is np.random else rng
        if isinstance(rng, _rng.SeedKey):
            self._uniform = lambda: rng.generator(self._batches).random(self._bs)
        elif isinstance(legacy, np.random.RandomState):
            self._uniform = lambda: legacy.random_sample(self._bs)
        elif isinstance(legacy, np.random.Generator):
            self._uniform = lambda: legacy.random(self._bs)
        else:
            self._uniform = None

    def __next__(self) -> np.ndarray:
        if self._uniform is None:
            n = len(self._p)
            a = n if self._base is None else self._base
            idx = np.asarray(self._rng.choice(a, size=(self._bs,), p=self._p))
        else:
            idx = self._cdf.searchsorted(self._uniform(), side="right")
            if self._base is not None:
                idx = self._base[idx]
        self._batches += 1
        return idx

    def remaining(self) -> None:
        return None

    def _fingerprint(self) -> dict:
        seeded = isinstance(self._rng, _rng.SeedKey)
        return {
            "kind": self.KIND,
            "length": len(self._p),
            "batch_size": self._bs,
            "shuffle": "seed" if seeded else "rng",
            "seed": self._rng.to_json() if seeded else None,
        }

    def state_dict(self) -> dict:
        state = self._fingerprint()
        state["batches"] = self._batches
        if state["shuffle"] == "rng":
            state["rng_now"] = _rng.get_rng_state(self._rng)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, self._fingerprint(), type(self).__name__)
        self._batches = int(state["batches"])
        if state["shuffle"] == "rng":
            _rng.set_rng_state(self._rng, state["rng_now"])
