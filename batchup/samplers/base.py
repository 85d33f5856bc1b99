"""The sampler contract and the iterator that cuts an index stream into batches.

A sampler decides WHICH sample indices form each batch and in WHAT order; it
knows nothing about the data. Unweighted samplers describe one epoch (all of
``range(n)`` or a subset) and :class:`IndexBatchIterator` turns that into
batches by plain arithmetic: the run is a sequence of flat positions
``0 .. n * repeats``; batch ``b`` covers a contiguous range of positions, and
position ``p`` is element ``p % n`` of epoch ``p // n``'s order. Batches run
across epoch boundaries, and only the last batch of a finite run is short.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchup import _rng
from batchup._checks import positive_int
from batchup._iterator import StatefulIterator, check_state
from batchup.samplers.sharding import ShardSpec, as_shard

__all__ = ["AbstractSampler", "IndexBatchIterator", "ShardedIndexBatchIterator", "make_index_iterator", "num_batches"]


def num_batches(n: int, batch_size: int) -> int:
    """Return the number of batches needed to cover ``n`` samples.

    Examples
    --------
    >>> num_batches(10, 3)
    4
    >>> num_batches(0, 3)
    0
    """
    return (n + batch_size - 1) // batch_size


class AbstractSampler:
    """Base class of samplers; methods raise ``NotImplementedError``.

    A sampler yields batches of *absolute* sample indices (1-D int64 arrays).
    ``map_indices`` translates positions within the sampler's own index space
    (for example positions within a subset) into absolute indices.
    """

    def num_indices_generated(self) -> Any:
        """Return how many indices one run yields: an int, ``np.inf`` or ``None``."""
        raise NotImplementedError("num_indices_generated is abstract in AbstractSampler")

    def map_indices(self, indices: Any) -> Any:
        """Map positions in the sampler's index space to absolute indices."""
        return indices

    def in_order_indices_batch_iterator(self, batch_size: int) -> Any:
        """Return an iterator of index batches in order."""
        raise NotImplementedError("in_order_indices_batch_iterator is abstract in AbstractSampler")

    def shuffled_indices_batch_iterator(self, batch_size: int, shuffle_rng: Any) -> Any:
        """Return an iterator of index batches in an order drawn from ``shuffle_rng``."""
        raise NotImplementedError("shuffled_indices_batch_iterator is abstract in AbstractSampler")


class IndexBatchIterator(StatefulIterator):
    """Cut ``repeats`` epochs of an order into batches of ``batch_size`` indices.

    Parameters
    ----------
    length : int
        Number of samples in one epoch.
    batch_size : int
        Indices per batch; only the last batch of a finite run is short.
    repeats : int or None
        Number of epochs; ``None`` repeats forever.
    base : ndarray or None
        The absolute indices of the epoch in order (a subset), or ``None``
        for ``range(length)``.
    rng : None, SeedKey or RNG object
        ``None`` keeps the order; a :class:`~batchup._rng.SeedKey` derives the
        permutation of epoch ``e`` from ``(seed, e)``; an RNG object is drawn
        from exactly when BatchUp 0.2 draws (lazily, at the first ``next()``
        and whenever a batch reaches the end of an epoch).
    drop_last : bool
        Drop a final short batch.
    shard : ShardSpec, optional
        Take only this rank's part of every epoch (see
        :mod:`batchup.samplers.sharding`); ``length`` stays the global size.

    Notes
    -----
    The state (:meth:`state_dict`) is a handful of ints for seeded and
    in-order runs. For an RNG object it also holds the object's state at the
    start of the current epoch and now, so restoring redraws one permutation
    and leaves the object exactly as it was at the checkpoint.
    """

    KIND = "index"
    #: Whether :meth:`take_run` can hand out several batches at once.
    GROUPABLE = True

    def __init__(
        self,
        length: int,
        batch_size: int,
        repeats: int | None = 1,
        base: np.ndarray | None = None,
        rng: Any = None,
        drop_last: bool = False,
        shard: ShardSpec | None = None,
    ) -> None:
        self._global_n = int(length)
        self._shard = shard
        self._n = self._global_n if shard is None else shard.per_rank(self._global_n)
        self._bs = positive_int("batch_size", batch_size)
        self._repeats = repeats
        if repeats is None and self._n == 0:
            raise ValueError("cannot repeat an empty set of samples forever (repeats=-1, length 0)")
        if shard is not None and shard.num_shards > 1 and rng is not None and not isinstance(rng, _rng.SeedKey):
            raise ValueError(
                "shuffle must be an int seed shared across ranks when sharding (every rank must "
                f"derive the same order); got shuffle={rng!r}"
            )
        self._base = base
        self._rng = rng
        self._drop_last = bool(drop_last)
        self._order: Any = None  # this epoch's order; None until the first draw
        self._epoch = 0
        self._offset = 0
        self._batches = 0
        self._done = False
        self._rng_epoch_start: Any = None

    # -- the arithmetic ---------------------------------------------------------
    def _epoch_rng(self, epoch: int) -> Any:
        """Return what epoch ``epoch`` is drawn from.

        A seed gives the epoch's own generator; an RNG object is drawn from
        directly, after its state is recorded so that a checkpoint can redraw
        this epoch. Subclasses that draw epochs differently call this too.
        """
        rng = self._rng
        if isinstance(rng, _rng.SeedKey):
            return rng.generator(epoch)
        self._rng_epoch_start = _rng.capture_rng_state(rng)
        return rng

    def _draw(self, epoch: int) -> None:
        n = self._global_n
        if self._rng is None:
            if self._base is None:
                self._base = np.arange(n, dtype=np.int64)
            order = self._base
        else:
            # rng.permutation(base) equals base[rng.permutation(n)] draw for draw,
            # which is what BatchUp 0.2 draws for a subset.
            perm = self._epoch_rng(epoch).permutation(n)
            order = perm if self._base is None else self._base[perm]
        self._order = order if self._shard is None else self._shard.select(order)

    def __next__(self) -> np.ndarray:
        if self._done:
            raise StopIteration
        if self._order is None:
            self._draw(self._epoch)
        off = self._offset
        end = off + self._bs
        if end <= self._n:
            self._offset = end
            self._batches += 1
            return self._order[off:end].copy()
        return self._next_across_epochs()

    def _next_across_epochs(self) -> np.ndarray:
        parts = []
        need = self._bs
        n = self._n
        while True:
            k = min(need, n - self._offset)
            if k > 0:
                parts.append(self._order[self._offset : self._offset + k])
                self._offset += k
                need -= k
            if self._offset >= n:
                self._epoch += 1
                if self._repeats is not None and self._epoch >= self._repeats:
                    if self._repeats != 1 and not isinstance(self._rng, (type(None), _rng.SeedKey)):
                        # BatchUp 0.2 draws one permutation past the last epoch; do the
                        # same so that an RNG shared with other code stays in step.
                        self._rng.permutation(self._global_n)
                    self._done = True
                    break
                self._draw(self._epoch)
                self._offset = 0
            if need == 0:
                break
        if not parts or (self._drop_last and need > 0):
            self._done = True
            raise StopIteration
        self._batches += 1
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)

    def take_run(self, max_batches: int) -> np.ndarray | None:
        """Take up to ``max_batches`` whole batches lying inside the current epoch.

        Returns their indices concatenated (a fresh array), or ``None`` when
        fewer than two whole batches are available, in which case the caller
        uses ``next()``. Used by gatherers that fetch several batches with one
        NumPy call; :meth:`state_dict` takes the number not yet handed out.
        """
        if self._done or max_batches < 2:
            return None
        if self._order is None:
            self._draw(self._epoch)
        m = min(max_batches, (self._n - self._offset) // self._bs)
        if m < 2:
            return None
        off = self._offset
        self._offset = off + m * self._bs
        self._batches += m
        return self._order[off : self._offset].copy()

    # -- length -------------------------------------------------------------------
    def remaining(self) -> int | None:
        """Return the number of batches still to come, or ``None`` if endless."""
        if self._done:
            return 0
        if self._repeats is None:
            return None
        consumed = self._epoch * self._n + self._offset if self._order is not None else 0
        left = self._n * self._repeats - consumed
        return left // self._bs if self._drop_last else num_batches(left, self._bs)

    def __len__(self) -> int:
        left = self.remaining()
        if left is None:
            raise TypeError("an endless batch iterator (repeats=-1) has no length")
        return left

    # -- state ----------------------------------------------------------------------
    def _fingerprint(self) -> dict:
        rng = self._rng
        if rng is None:
            mode, seed = "in_order", None
        elif isinstance(rng, _rng.SeedKey):
            mode, seed = "seed", rng.to_json()
        else:
            mode, seed = "rng", None
        return {
            "kind": self.KIND,
            "length": self._global_n,
            "batch_size": self._bs,
            "repeats": -1 if self._repeats is None else self._repeats,
            "drop_last": self._drop_last,
            "shuffle": mode,
            "seed": seed,
            "shard": None if self._shard is None else self._shard.to_json(),
        }

    def state_dict(self, pending: int = 0) -> dict:
        """Return the position; ``pending`` batches taken by :meth:`take_run` are not yet consumed."""
        state = self._fingerprint()
        state.update(
            started=self._order is not None,
            epoch=self._epoch,
            offset=self._offset - pending * self._bs,
            batches=self._batches - pending,
            done=self._done,
        )
        if state["shuffle"] == "rng":
            if self._order is not None and self._rng_epoch_start is None:
                raise TypeError(f"cannot checkpoint: the state of {self._rng!r} cannot be captured")
            state["rng_epoch_start"] = self._rng_epoch_start
            state["rng_now"] = _rng.get_rng_state(self._rng)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, self._fingerprint(), type(self).__name__)
        try:
            epoch, offset = int(state["epoch"]), int(state["offset"])
            started, done, batches = bool(state["started"]), bool(state["done"]), int(state["batches"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{type(self).__name__}: malformed state ({err!r})") from err
        if not 0 <= offset <= self._n or epoch < 0:
            raise ValueError(f"{type(self).__name__}: malformed state, offset {offset} epoch {epoch}")
        self._epoch, self._offset, self._batches, self._done = epoch, offset, batches, done
        self._order = None
        # Loading may rewind an iterator that already drew (a prefetching one): forget that draw.
        self._rng_epoch_start = None
        if self._fingerprint()["shuffle"] == "rng":
            if started:
                _rng.set_rng_state(self._rng, state["rng_epoch_start"])
            elif state.get("rng_now") is not None:
                _rng.set_rng_state(self._rng, state["rng_now"])
        if started:
            self._draw(epoch)
            if self._fingerprint()["shuffle"] == "rng":
                _rng.set_rng_state(self._rng, state["rng_now"])



class ShardedIndexBatchIterator(IndexBatchIterator):
    """An :class:`IndexBatchIterator` over one rank's shard that also reports padding.

    After each ``next()``, :attr:`last_padding` is a boolean mask over the
    batch: True for samples that are wrap-around duplicates added so that
    every rank gets the same number of samples (``remainder="pad"``).
    """

    GROUPABLE = False  # one batch at a time, so that last_padding matches each batch

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pad = self._shard.padding(self._global_n) if self._shard is not None else np.zeros(self._n, bool)
        self.last_padding: np.ndarray | None = None

    def __next__(self) -> np.ndarray:
        start = self._offset if self._order is not None else 0
        batch = super().__next__()
        m = self._n
        self.last_padding = self._pad[(start + np.arange(len(batch))) % m] if m else np.zeros(0, bool)
        return batch

    def take_run(self, max_batches: int) -> None:
        return None


def make_index_iterator(*args: Any, shard: Any = None, **kwargs: Any) -> IndexBatchIterator:
    """Build an :class:`IndexBatchIterator`, sharded when ``shard`` is given."""
    spec = as_shard(shard)
    if spec is None:
        return IndexBatchIterator(*args, **kwargs)
    return ShardedIndexBatchIterator(*args, shard=spec, **kwargs)
