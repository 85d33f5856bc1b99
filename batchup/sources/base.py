"""The data source contract: reusable configuration that makes batch iterators.

A data source holds no cursor. ``batch_iterator`` returns a fresh iterator
object that records the position (and can save it with ``state_dict``).
Random-access sources also expose the two halves of that work separately:
``batch_indices_iterator`` (which samples form each batch) and
``samples_by_indices_nomapping`` (fetch those samples), which is what the
worker pools split between the caller and the workers.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from batchup import _rng
from batchup._checks import index_array, positive_int, repeats_value
from batchup._iterator import StatefulIterator, check_state
from batchup.samplers import (
    AbstractSampler,
    BalancedSampler,
    StandardSampler,
    SubsetSampler,
    WeightedSampler,
    WeightedSubsetSampler,
    num_batches,
)
from batchup.samplers.sharding import as_shard

__all__ = ["AbstractDataSource", "RandomAccessBatchIterator", "RandomAccessDataSource"]

# Samplers that understand a SeedKey and ``drop_last``; a user's own sampler
# receives a plain Generator instead.
_OWN_SAMPLERS = (StandardSampler, SubsetSampler, WeightedSampler, WeightedSubsetSampler, BalancedSampler)
# Path tag of the per-rank random streams of samplers that draw with replacement.
_SHARD_STREAM = 0x5A4D


class AbstractDataSource:
    """Base class of data sources.

    ``num_samples`` and ``batch_iterator`` raise ``NotImplementedError``;
    ``map`` and the ``batch_map_*`` helpers work for every subclass.
    """

    @property
    def is_random_access(self) -> bool:
        """Whether the source supports ``batch_indices_iterator`` and ``samples_by_indices``."""
        return False

    def num_samples(self, **kwargs: Any) -> Any:
        """Return the number of samples one iteration yields: int, ``np.inf`` or ``None``."""
        raise NotImplementedError("num_samples is abstract in AbstractDataSource")

    def batch_iterator(self, batch_size: int, **kwargs: Any) -> Any:
        """Return an iterator over mini-batches."""
        raise NotImplementedError("batch_iterator is abstract in AbstractDataSource")

    def map(self, fn: Callable, *, seed: Any = None) -> Any:
        """Return a source whose batches are ``fn(*batch)`` (see :class:`MapDataSource`)."""
        # Imported here: mapped.py builds on this module (grain's pattern).
        from batchup.sources.mapped import MapDataSource

        return MapDataSource(self, fn, seed=seed)

    def prefetch(
        self,
        num_workers: int = 2,
        *,
        buffer_size: int | None = None,
        kind: str = "process",
        start_method: str | None = None,
        timeout: Any = None,
    ) -> Any:
        """Return a source that prepares this source's batches in background workers.

        Parameters
        ----------
        num_workers : int, default 2
            Worker processes (or threads); ``0`` prepares every batch in the
            calling thread, the serial twin that gives identical batches.
        buffer_size : int, optional
            Keyword-only: batches prepared ahead (default ``max(4, 2 * num_workers)``).
        kind : {'process', 'thread'}, default 'process'
            Keyword-only: processes for Python-heavy preparation, threads for
            I/O or NumPy work that releases the GIL.
        start_method : {'fork', 'forkserver', 'spawn'}, optional
            Keyword-only, for processes (default ``'fork'`` where available).
        timeout : float, optional
            Keyword-only: seconds to wait for one batch before raising
            :class:`~batchup.parallel.BatchTimeoutError`.

        Returns
        -------
        batchup.parallel.ParallelDataSource
            Its ``batch_iterator`` takes the same arguments as this source's
            and yields the same batches in the same order. It owns its pool:
            call ``close()`` or use it in a ``with`` block.

        Raises
        ------
        TypeError
            If this source is not random access.

        Examples
        --------
        >>> import numpy as np
        >>> from batchup.sources import ArrayDataSource
        >>> ds = ArrayDataSource([np.arange(8)])
        >>> with ds.prefetch(num_workers=2, kind="thread") as par:
        ...     print([b[0].tolist() for b in par.batch_iterator(3)])
        [[0, 1, 2], [3, 4, 5], [6, 7]]

        Shuffled batches equal the serial ones for the same ``shuffle``:

        >>> serial = [b[0].tolist() for b in ds.batch_iterator(3, shuffle=7)]
        >>> with ds.prefetch(num_workers=2) as par:
        ...     print([b[0].tolist() for b in par.batch_iterator(3, shuffle=7)] == serial)
        True
        """
        # Imported here: parallel builds on sources (the one permitted upward reference).
        from batchup.parallel.prefetch import prefetch

        return prefetch(
            self, num_workers, buffer_size=buffer_size, kind=kind, start_method=start_method, timeout=timeout
        )

    def _batch_count(self, batch_size: int, n_batches: Any, kwargs: dict) -> Any:
        if n_batches is not None:
            return n_batches
        n = self.num_samples(**kwargs)
        if n is None:
            return None
        if n == np.inf:
            raise ValueError(
                "cannot apply batch_map_* to an infinite data source without n_batches; "
                "pass n_batches=<number of batches>"
            )
        if kwargs.get("drop_last"):
            return int(n) // batch_size
        return num_batches(int(n), batch_size)

    def batch_map_concat(
        self,
        func: Callable,
        batch_size: int,
        progress_iter_func: Any = None,
        n_batches: Any = None,
        prepend_args: Any = None,
        *,
        progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Apply ``func`` to every batch and concatenate the results per output.

        See :func:`batchup.pipeline.batch_map_concat`; ``kwargs`` (``shuffle``,
        ...) go to both ``num_samples`` and ``batch_iterator``.
        """
        # Imported here: pipeline consumes sources and may not be imported by them.
        from batchup.pipeline.batch_map import batch_map_concat

        n_batches = self._batch_count(batch_size, n_batches, kwargs)
        it = self.batch_iterator(batch_size, **kwargs)
        return batch_map_concat(
            func, it, progress_iter_func, n_batches=n_batches, prepend_args=prepend_args, progress=progress
        )

    def batch_map_mean(
        self,
        func: Callable,
        batch_size: int,
        progress_iter_func: Any = None,
        sum_axis: Any = None,
        n_batches: Any = None,
        prepend_args: Any = None,
        *,
        progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Apply ``func`` to every batch and return the per-sample mean of its results.

        See :func:`batchup.pipeline.batch_map_mean`.
        """
        from batchup.pipeline.batch_map import batch_map_mean

        n_batches = self._batch_count(batch_size, n_batches, kwargs)
        it = self.batch_iterator(batch_size, **kwargs)
        return batch_map_mean(
            func,
            it,
            progress_iter_func,
            sum_axis=sum_axis,
            n_batches=n_batches,
            prepend_args=prepend_args,
            progress=progress,
        )


class RandomAccessDataSource(AbstractDataSource):
    """A source whose samples can be fetched by index, driven by a sampler.

    Parameters
    ----------
    length : int
        Number of samples (ignored when ``sampler`` is given).
    indices : 1-D array-like of int, optional
        Draw only these samples (a :class:`~batchup.samplers.SubsetSampler`).
    repeats : int, default 1
        Epochs per iteration; ``-1`` for forever.
    sampler : AbstractSampler, optional
        Use this sampler instead of building one; excludes ``indices`` and
        ``repeats != 1``.
    include_indices : bool, default False
        Put the absolute sample indices first in every batch.

    Raises
    ------
    ValueError
        For ``sampler`` together with ``repeats != 1`` or with ``indices``, or
        an invalid ``repeats``.
    """

    def __init__(
        self,
        length: int,
        indices: Any = None,
        repeats: int = 1,
        sampler: AbstractSampler | None = None,
        include_indices: bool = False,
    ) -> None:
        if sampler is not None:
            if repeats != 1:
                raise ValueError(f"repeats must be 1 when a sampler is given, got repeats={repeats!r}")
            if indices is not None:
                raise ValueError("pass either indices or sampler, not both")
        else:
            repeats_value(repeats)
        self.include_indices = bool(include_indices)
        if sampler is None:
            if indices is None:
                sampler = StandardSampler(length, repeats=repeats)
            else:
                sampler = SubsetSampler(index_array("indices", indices, length), repeats=repeats)
        self.sampler = sampler
        self._length = length

    @property
    def is_random_access(self) -> bool:
        return True

    def num_samples(self, **kwargs: Any) -> Any:
        sampler: Any = self.sampler
        n = sampler.num_indices_generated()
        spec = as_shard(kwargs.get("shard"))
        if spec is None or n == np.inf:
            return n
        if isinstance(sampler, (StandardSampler, SubsetSampler)):
            epoch = sampler.length
        elif _finite_weighted(sampler):
            epoch = sampler.num_samples
        elif isinstance(sampler, BalancedSampler):
            per_epoch = sampler.batches_per_epoch * sampler.batch_size
            return spec.per_rank(sampler.batches_per_epoch) * sampler.batch_size * (n // per_epoch)
        else:
            return n
        return spec.per_rank(epoch) * (n // max(epoch, 1))

    def samples_by_indices_nomapping(self, indices: Any) -> Any:
        """Return the samples at absolute ``indices`` (abstract here)."""
        raise NotImplementedError("samples_by_indices_nomapping is abstract in RandomAccessDataSource")

    def samples_by_indices(self, indices: Any) -> Any:
        """Return the samples at ``indices`` given as positions in the sampler's index space."""
        return self.samples_by_indices_nomapping(self.sampler.map_indices(indices))

    def batch_indices_iterator(self, batch_size: int, shuffle: Any = None, **kwargs: Any) -> Any:
        """Return an iterator of absolute index batches (1-D int arrays).

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        shuffle : bool, int, RandomState or Generator, optional
            ``None``/``False`` in order; ``True`` the global NumPy RNG; an
            int seeds a reproducible, resumable order; an RNG object is drawn from.
        drop_last : bool, default False
            Keyword-only: drop a final short batch.
        shard : (rank, num_shards) or ShardSpec, optional
            Keyword-only: take only this rank's disjoint part of every epoch;
            every rank gets the same number of batches. Shuffling must then use
            an int seed that all ranks share. Weighted samplers draw an
            independent stream per rank instead (finite weighted epochs are
            split between ranks). See :class:`~batchup.samplers.ShardSpec`.
        """
        positive_int("batch_size", batch_size)
        rng = _rng.resolve_shuffle(shuffle)
        drop_last = bool(kwargs.get("drop_last", False))
        spec = as_shard(kwargs.get("shard"))
        sampler = self.sampler
        own = type(sampler) in _OWN_SAMPLERS  # a subclass may not understand SeedKey
        extra: dict = {"drop_last": drop_last} if (own and drop_last) else {}
        if spec is not None:
            if own and (isinstance(sampler, (StandardSampler, SubsetSampler, BalancedSampler)) or _finite_weighted(sampler)):
                extra["shard"] = spec
            elif isinstance(rng, _rng.SeedKey):
                rng = rng.child(_SHARD_STREAM, spec.rank)
            elif spec.num_shards > 1:
                raise ValueError(
                    "sharding this sampler needs shuffle to be an int seed shared across ranks; "
                    f"got shuffle={shuffle!r}"
                )
        if rng is None:
            return sampler.in_order_indices_batch_iterator(batch_size, **extra)
        if not own:
            rng = _rng.as_generator(rng)
        return sampler.shuffled_indices_batch_iterator(batch_size, rng, **extra)

    def batch_iterator(self, batch_size: int, shuffle: Any = None, **kwargs: Any) -> StatefulIterator:
        """Return an iterator over batches; see :meth:`batch_indices_iterator` for the arguments."""
        return RandomAccessBatchIterator(self, self.batch_indices_iterator(batch_size, shuffle, **kwargs))


def _finite_weighted(sampler: Any) -> bool:
    """Weighted samplers with finite epochs split each epoch between ranks like the others."""
    return isinstance(sampler, (WeightedSampler, WeightedSubsetSampler)) and sampler.num_samples is not None


class RandomAccessBatchIterator(StatefulIterator):
    """Yield ``source.samples_by_indices_nomapping(ix)`` for each index batch ``ix``."""

    KIND = "random_access"

    def __init__(self, source: RandomAccessDataSource, indices: Any) -> None:
        self._source = source
        self._indices = indices

    def __next__(self) -> Any:
        return self._source.samples_by_indices_nomapping(next(self._indices))

    def __len__(self) -> int:
        return len(self._indices)

    @property
    def last_padding(self) -> Any:
        """For a sharded iterator: mask of wrap-around duplicates in the last batch, else None."""
        return getattr(self._indices, "last_padding", None)

    def remaining(self) -> Any:
        fn = getattr(self._indices, "remaining", None)
        return fn() if fn is not None else None

    def state_dict(self) -> dict:
        return {"kind": self.KIND, "indices": _state_of(self._indices)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, {"kind": self.KIND}, type(self).__name__)
        _load_into(self._indices, state["indices"])


def _state_of(it: Any) -> dict:
    fn = getattr(it, "state_dict", None)
    if fn is None:
        raise TypeError(f"cannot checkpoint: the index iterator {it!r} has no state_dict()")
    return fn()


def _load_into(it: Any, state: Any) -> None:
    fn = getattr(it, "load_state_dict", None)
    if fn is None:
        raise TypeError(f"cannot restore: the index iterator {it!r} has no load_state_dict()")
    fn(state)
