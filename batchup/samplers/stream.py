"""StreamPlan: an endless stream of weighted draws with replacement.

BatchUp 0.2's weighted samplers have no epochs: every batch is a fresh
draw of ``batch_size`` indices with probability proportional to the
weights. With an int seed batch ``b`` is drawn from a generator derived from
``(seed, b)``, so any batch can be computed directly and a checkpoint is one
counter; each rank of a sharded run draws from a stream of its own. With an
RNG object every batch is ``rng.choice(n, size=(bs,), p=weights)`` (computed
through an equivalent cached CDF), exactly as BatchUp 0.2 draws.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchup import _rng
from batchup._checks import positive_int
from batchup._iterator import StatefulIterator, check_state, normalise
from batchup.samplers.plan import BatchPlan, PlanOptions, SeedRequiredError

__all__ = ["StreamPlan"]

# Path tag of the per-rank streams of a sharded weighted stream.
_SHARD_STREAM = 0x5A4D


class StreamPlan(BatchPlan):
    """Endless batches of ``batch_size`` indices drawn with replacement from a CDF.

    Parameters
    ----------
    p : ndarray
        Normalised weights.
    cdf : ndarray
        Their cumulative sum, normalised so the last entry is 1.
    base : ndarray or None
        Absolute indices of a subset (position ``i`` of the weights is
        sample ``base[i]``), or ``None``.
    batch_size : int
        Indices per batch.
    options : PlanOptions
        ``shuffle`` must be set (in-order weighted sampling does not exist);
        ``shard`` gives each rank its own stream (int seeds only);
        ``drop_last`` has no effect (every batch is full).
    identity : dict, optional
        Fields that identify the sampler in checkpoints.
    """

    KIND = "stream"

    def __init__(
        self, p: np.ndarray, cdf: np.ndarray, base: np.ndarray | None, batch_size: int,
        options: PlanOptions, identity: dict | None = None,
    ) -> None:
        bs = positive_int("batch_size", batch_size)
        if options.shuffle is None:
            raise NotImplementedError(
                "in-order iteration is not supported by weighted samplers; pass shuffle "
                "(True, an int seed or a RandomState)"
            )
        shard = options.shard
        key = options.shuffle
        if shard is not None and shard.num_shards > 1:
            if not isinstance(key, _rng.SeedKey) or key.drawn:
                raise SeedRequiredError(
                    "sharding a weighted stream needs shuffle to be an int seed shared across ranks; "
                    f"got shuffle={key!r}"
                )
            key = key.child(_SHARD_STREAM, shard.rank)
        self._key = key
        self._p = p
        self._cdf = cdf
        self._base = base
        self._identity_fields = dict(identity or {})
        self._setup(options, bs, None, np.inf)
        self.random_access = isinstance(key, _rng.SeedKey)

    def draw(self, uniform: np.ndarray) -> np.ndarray:
        """Turn uniform draws into indices (``cdf.searchsorted``, mapped through a subset).

        Parameters
        ----------
        uniform : numpy.ndarray
            Draws from ``[0, 1)``, one per index wanted.

        Returns
        -------
        numpy.ndarray
            Absolute sample indices, index ``i`` with probability ``p[i]``.
        """
        idx = self._cdf.searchsorted(uniform, side="right")
        return idx if self._base is None else self._base[idx]

    def indices(self, b: int) -> np.ndarray:
        if not self.random_access:
            return super().indices(b)
        assert self.batch_size is not None
        return self.draw(self._key.generator(b).random(self.batch_size))

    def _identity(self) -> dict:
        return dict(self._identity_fields)

    def restore(self, fingerprint: Any, position: Any, where: str) -> tuple:
        """Continue a checkpoint; one from another number of ranks continues every rank's own stream.

        Draws with replacement have no epoch to finish: rank ``r`` of the new
        job goes on with stream ``r`` from the checkpoint's position (ranks
        the old job did not have start their streams at that position).

        Parameters
        ----------
        fingerprint : dict
            The ``"plan"`` field of the state.
        position : int
            The ``"position"`` field of the state.
        where : str
            The restoring iterator's name, for the messages.

        Returns
        -------
        tuple of (BatchPlan, int)
            This plan and the position to continue from.

        Raises
        ------
        ValueError
            If the state belongs to another stream.
        """
        if self.random_access and isinstance(fingerprint, Mapping):
            mine = self.fingerprint()
            differ = [k for k in set(mine) | set(fingerprint) if normalise(mine.get(k)) != normalise(fingerprint.get(k))]
            if differ == ["shard"]:
                return self, self.check_position(position)
        return super().restore(fingerprint, position, where)

    def iterator(self) -> Any:
        return super().iterator() if self.random_access else DrawnStreamIterator(self)


class DrawnStreamIterator(StatefulIterator):
    """Draw every batch of a :class:`StreamPlan` from an RNG object, as BatchUp 0.2 does."""

    KIND = "index"

    def __init__(self, plan: StreamPlan) -> None:
        self.plan = plan
        self.position = 0
        self.last_padding = None
        rng = plan.options.shuffle
        self._rng = rng
        legacy = np.random.mtrand._rand if rng is np.random else rng
        bs = plan.batch_size
        if isinstance(legacy, np.random.RandomState):
            self._uniform: Any = lambda: legacy.random_sample(bs)
        elif isinstance(legacy, np.random.Generator):
            self._uniform = lambda: legacy.random(bs)
        else:
            self._uniform = None

    def __next__(self) -> np.ndarray:
        plan = self.plan
        if self._uniform is None:
            n = len(plan._p)
            a = n if plan._base is None else plan._base
            idx = np.asarray(self._rng.choice(a, size=(plan.batch_size,), p=plan._p))
        else:
            idx = plan.draw(self._uniform())
        self.position += 1
        return idx

    def state_dict(self) -> dict:
        return {
            "kind": self.KIND, "plan": self.plan.fingerprint(), "position": self.position,
            "rng_now": _rng.get_rng_state(self._rng),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        where = type(self).__name__
        check_state(state, {"kind": self.KIND, "plan": self.plan.fingerprint()}, where)
        if "rng_now" not in state or "position" not in state:
            raise ValueError(f"{where}: malformed state, the field 'rng_now' or 'position' is missing")
        self.position = self.plan.check_position(state["position"])
        _rng.set_rng_state(self._rng, state["rng_now"])
