"""Finite epochs of weighted draws, with or without replacement.

A :class:`~batchup.samplers.WeightedSampler` given ``num_samples=`` (or
``replace=False``) has epochs of ``num_samples`` indices. Each epoch is drawn
whole from a generator derived from ``(seed, epoch)`` and then cut into
batches by the same arithmetic as the unweighted samplers (a
:class:`~batchup.samplers.flat.FlatPlan`), so these runs resume, shard and
drop a short last batch like the unweighted ones.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup._checks import positive_int, repeats_value

__all__ = ["EpochOptions", "draw_epoch"]


class EpochOptions:
    """The finite-epoch options shared by both weighted samplers, validated.

    Parameters
    ----------
    p : numpy.ndarray
        The sampler's weights (only which are positive matters here).
    num_samples : int or None
        Indices per epoch; ``None`` with ``replace=True`` is the endless
        stream, with ``replace=False`` it means every positive weight once.
    replace : bool
        Draw with replacement.
    repeats : int
        Epochs per iteration (``-1``: forever); only with finite epochs.

    Raises
    ------
    TypeError
        If ``replace`` is not a bool or ``num_samples`` not an int.
    ValueError
        If ``num_samples`` is not positive or, without replacement, exceeds
        the positive weights; if ``repeats`` is invalid or given for the
        endless stream.
    """

    def __init__(self, p: np.ndarray, num_samples: Any, replace: Any, repeats: Any) -> None:
        if not isinstance(replace, (bool, np.bool_)):
            raise TypeError(f"replace must be a bool, got {replace!r}")
        self.replace = bool(replace)
        positive = int(np.count_nonzero(p))
        if num_samples is None and not self.replace:
            num_samples = positive
        if num_samples is not None:
            num_samples = positive_int("num_samples", num_samples)
            if not self.replace and num_samples > positive:
                raise ValueError(
                    f"num_samples={num_samples} exceeds the {positive} indices with a positive weight; "
                    "without replacement an epoch cannot draw more"
                )
        self.num_samples = num_samples
        self.repeats = repeats_value(repeats)
        if num_samples is None and repeats != 1:
            raise ValueError(
                f"repeats={repeats!r} needs finite epochs: pass num_samples= (the default stream is "
                "already endless)"
            )

    def count(self) -> Any:
        """Return how many indices one iteration draws.

        Returns
        -------
        int or float
            ``num_samples * repeats``, or ``np.inf`` for the endless stream
            and ``repeats=-1``.
        """
        if self.num_samples is None or self.repeats is None:
            return np.inf
        return self.num_samples * self.repeats


def draw_epoch(gen: Any, p: np.ndarray, cdf: np.ndarray, k: int, replace: bool) -> np.ndarray:
    """Draw one epoch of ``k`` positions in ``range(len(p))`` from ``gen``.

    ``p`` are the weights as given (any positive scale: without replacement
    only their ratios matter, and unnormalised weights keep tiny positive
    ones from underflowing to 0); ``cdf`` is their normalised running sum.

    Parameters
    ----------
    gen : numpy.random.Generator or RandomState
        Drawn from (``gen.random``).
    p : numpy.ndarray
        The weights, non-negative, any positive scale.
    cdf : numpy.ndarray
        The normalised cumulative sum of ``p`` (used with replacement).
    k : int
        Positions to draw; without replacement at most the number of
        positive weights.
    replace : bool
        Draw with replacement (independent draws) or without (a weighted
        random ordering, Efraimidis-Spirakis).

    Returns
    -------
    numpy.ndarray
        ``k`` int64 positions in ``range(len(p))``, never one of weight 0.
    """
    if replace:
        return cdf.searchsorted(gen.random(k), side="right").astype(np.int64)
    # Efraimidis-Spirakis: the k largest keys u ** (1 / w), in decreasing order,
    # are a draw of k distinct items, each next in proportion to its weight.
    # Ranked in the log domain, log(w) - log(-log(u)), so tiny weights cannot overflow.
    pos = np.flatnonzero(p > 0)
    with np.errstate(divide="ignore"):
        keys = np.log(p[pos]) - np.log(-np.log1p(-gen.random(len(pos))))
    top = np.argpartition(-keys, k - 1)[:k] if k < len(pos) else np.arange(len(pos))
    return pos[top[np.argsort(-keys[top], kind="stable")]].astype(np.int64)
