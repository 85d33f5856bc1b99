"""MapDataSource: apply a function to every batch of another source."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from batchup import _profile, _rng
from batchup._iterator import WrappingIterator, check_state
from batchup.samplers.plan import BatchPlan, PlanOptions, plan_options
from batchup.sources.base import AbstractDataSource, BatchIterator

__all__ = ["MapBatchIterator", "MapDataSource"]


class MapDataSource(AbstractDataSource):
    """Yield ``fn(*batch)`` for every batch of ``source``.

    Parameters
    ----------
    source : AbstractDataSource
        The source to transform; kept as ``self.source``.
    fn : callable
        Called with the batch unpacked into positional arguments (indices
        first with ``include_indices``); its return value is passed on as is.
    seed : int, optional
        Keyword-only. When given, ``fn`` is also called with ``rng=``, a
        ``np.random.Generator`` derived from ``(seed, batch number)``, so
        random augmentation is reproducible and independent per batch, in
        whatever thread, process or framework the batch is made.

    Notes
    -----
    The batch number is the batch's position in the plan being iterated
    (``epoch * len(plan) + b`` for pass ``epoch``), so the serial iterator,
    the worker pools and every adapter give a seeded map the same number for
    the same batch, also when the map sits inside a composite or choice
    source. Over a source that is not random access, batches are numbered
    from 0 in every iterator.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> ds = ArrayDataSource([np.arange(6)]).map(lambda x: (x * 2,))
    >>> [b[0].tolist() for b in ds.batch_iterator(4)]
    [[0, 2, 4, 6], [8, 10]]

    A seeded map: noise drawn from the batch's own generator.

    >>> noisy = ArrayDataSource([np.zeros(4)]).map(lambda x, rng: (x + rng.integers(0, 9, len(x)),), seed=1)
    >>> a = [b[0].tolist() for b in noisy.batch_iterator(2)]
    >>> a == [b[0].tolist() for b in noisy.batch_iterator(2)]
    True
    """

    def __init__(self, source: AbstractDataSource, fn: Callable, *, seed: Any = None) -> None:
        if not isinstance(source, AbstractDataSource):
            raise TypeError(f"source must be a data source, got {type(source).__name__}")
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        self.source: Any = source
        self.fn = fn
        if seed is None or isinstance(seed, _rng.SeedKey):
            self.seed = seed
        else:
            self.seed = _rng.SeedKey(seed) if not isinstance(seed, bool) else _bad_seed(seed)
        self._random_access = source.is_random_access

    @property
    def is_random_access(self) -> bool:
        return self._random_access

    def num_samples(self, **kwargs: Any) -> Any:
        """Return the wrapped source's sample count (a map keeps every sample).

        Parameters
        ----------
        **kwargs
            Iteration options, passed to ``source.num_samples``.

        Returns
        -------
        int, float or None
            An int, ``np.inf`` or ``None`` (unknown).
        """
        return self.source.num_samples(**kwargs)

    def apply(self, batch: Any, batch_number: int | None = None) -> Any:
        """Apply the function to one batch (``batch_number`` selects its generator).

        Parameters
        ----------
        batch : tuple of arrays
            A batch of the wrapped source, passed to ``fn`` unpacked.
        batch_number : int, optional
            The batch's number in its plan; required for a seeded map, which
            passes ``rng=seed.generator(batch_number)`` to ``fn``.

        Returns
        -------
        object
            What ``fn`` returns: the mapped batch.

        Raises
        ------
        ValueError
            For a seeded map without ``batch_number``.
        """
        if _profile.ON and _profile.LOCAL.maps is not None:  # a profiled fetch runs here: time the function
            return _profile.timed_apply(self, batch, batch_number)
        if self.seed is None:
            return self.fn(*batch)
        if batch_number is None:
            raise ValueError("a seeded map needs the batch number to derive its generator")
        return self.fn(*batch, rng=self.seed.generator(batch_number))

    def identity(self) -> dict:
        """Return what identifies this map in checkpoints: its seed and its source.

        Returns
        -------
        dict
            ``source`` (the class name), ``map_seed`` and ``inner``, the
            wrapped source's identity. The function itself is not part of it.
        """
        return {"source": "MapDataSource", "map_seed": None if self.seed is None else self.seed.to_json(),
                "inner": self.source.identity()}

    # -- random access: the inner plan, fetched then mapped --------------------------------
    def _require_random_access(self) -> None:
        if not self._random_access:
            raise TypeError("this MapDataSource wraps a source that is not random access")

    def plan(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> BatchPlan:
        """Return the plan of the wrapped source (a map does not change which samples form a batch).

        Parameters
        ----------
        batch_size : int or None
            Samples per batch.
        shuffle : bool, int, RandomState or Generator, optional
            As for the wrapped source's ``batch_iterator``.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only.

        Returns
        -------
        BatchPlan
            The wrapped source's plan.

        Raises
        ------
        TypeError
            If the wrapped source is not random access.
        """
        self._require_random_access()
        return self._plan(batch_size, plan_options("MapDataSource.plan", kwargs, shuffle))

    def _plan(self, batch_size: Any, options: PlanOptions) -> BatchPlan:
        return self.source._plan(batch_size, options)

    def batch_indices_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> Any:
        """Return the wrapped source's index iterator (a map keeps the indices).

        Parameters
        ----------
        batch_size : int or None
            Samples per batch.
        shuffle : bool, int, RandomState or Generator, optional
            As for the wrapped source's ``batch_iterator``.
        **kwargs
            ``drop_last``, ``shard`` and ``epoch``, keyword-only.

        Returns
        -------
        iterator of numpy.ndarray
            ``source.batch_indices_iterator(batch_size, shuffle, **kwargs)``.

        Raises
        ------
        TypeError
            If the wrapped source is not random access.
        """
        self._require_random_access()
        return self.source.batch_indices_iterator(batch_size, shuffle, **kwargs)

    def fetch_batch(self, indices: Any, batch_number: int) -> Any:
        """Fetch from the wrapped source (passing the batch number on) and apply the function.

        Parameters
        ----------
        indices : numpy.ndarray of int
            Absolute sample indices, as the plan gives them.
        batch_number : int
            The batch's number in its plan (selects a seeded map's generator).

        Returns
        -------
        object
            ``fn`` applied to the wrapped source's batch.
        """
        return self.apply(self.source.fetch_batch(indices, batch_number), batch_number)

    def span_batches(self, batch_size: int | None) -> int:
        """Return how many batches the wrapped source gathers at once (1 if it is not random access).

        Parameters
        ----------
        batch_size : int or None
            The batch size being iterated.

        Returns
        -------
        int
            The wrapped source's :meth:`~batchup.sources.RandomAccessDataSource.span_batches`.
        """
        return self.source.span_batches(batch_size) if self._random_access else 1

    def fetch_span(self, indices: Any, count: int, first_number: int) -> list:
        """Fetch ``count`` batches from the wrapped source at once, then map each.

        Parameters
        ----------
        indices : numpy.ndarray of int
            The absolute indices of ``count`` consecutive batches of equal size.
        count : int
            The number of batches.
        first_number : int
            The batch number of the first (the others follow on).

        Returns
        -------
        list
            ``count`` mapped batches, each with its own batch number.
        """
        batches = self.source.fetch_span(indices, count, first_number)
        return [self.apply(batch, first_number + i) for i, batch in enumerate(batches)]

    def samples_by_indices_nomapping(self, indices: Any, batch_number: int | None = None) -> Any:
        """Return ``fn(*source.samples_by_indices_nomapping(indices))``; a seeded map needs ``batch_number``.

        Parameters
        ----------
        indices : numpy.ndarray of int
            Absolute sample indices.
        batch_number : int, optional
            The batch number a seeded map derives its generator from.

        Returns
        -------
        object
            The mapped samples.

        Raises
        ------
        TypeError
            If the wrapped source is not random access.
        ValueError
            For a seeded map without ``batch_number``.
        """
        self._require_random_access()
        if batch_number is not None:
            return self.fetch_batch(indices, batch_number)
        return self.apply(self.source.samples_by_indices_nomapping(indices), batch_number)

    def samples_by_indices(self, indices: Any, batch_number: int | None = None) -> Any:
        """Return ``fn(*source.samples_by_indices(indices))``; a seeded map needs ``batch_number``.

        Parameters
        ----------
        indices : numpy.ndarray of int
            Positions in the wrapped source's sampler.
        batch_number : int, optional
            The batch number a seeded map derives its generator from.

        Returns
        -------
        object
            The mapped samples.

        Raises
        ------
        TypeError
            If the wrapped source is not random access.
        ValueError
            For a seeded map without ``batch_number``.
        """
        self._require_random_access()
        return self.apply(self.source.samples_by_indices(indices), batch_number)

    def batch_iterator(self, batch_size: Any, shuffle: Any = None, **kwargs: Any) -> Any:
        """Return an iterator over the mapped batches; the arguments are those of the wrapped source.

        Parameters
        ----------
        batch_size : int or None
            Samples per batch.
        shuffle : bool, int, RandomState or Generator, optional
            As for the wrapped source's ``batch_iterator``.
        **kwargs
            The wrapped source's other iteration options (``drop_last``,
            ``shard``, ``epoch`` for random-access sources).

        Returns
        -------
        iterator
            Yields ``fn(*batch)`` for every batch of the wrapped source, with
            ``len()`` and ``state_dict()`` / ``load_state_dict()`` when the
            wrapped iterator has them.
        """
        if self._random_access:
            plan = self._plan(batch_size, plan_options("MapDataSource.batch_iterator", kwargs, shuffle))
            return BatchIterator(self, plan)
        if shuffle is not None:
            kwargs = dict(kwargs, shuffle=shuffle)
        return MapBatchIterator(self, self.source.batch_iterator(batch_size, **kwargs))


def _bad_seed(seed: Any) -> Any:
    raise TypeError(f"seed must be None or an int, got {seed!r}")


class MapBatchIterator(WrappingIterator):
    """Apply a :class:`MapDataSource`'s function to each batch of a source that is not random access.

    Batches are numbered from 0 for a seeded map.

    Parameters
    ----------
    source : MapDataSource
        The map whose function is applied.
    inner : iterator
        The wrapped source's batch iterator.
    """

    KIND = "map"

    def __init__(self, source: MapDataSource, inner: Any) -> None:
        super().__init__(inner)
        self._source = source
        self._count = 0

    def __next__(self) -> Any:
        batch = next(self._inner)
        number = self._count
        self._count = number + 1
        return self._source.apply(batch, number)

    def _own_state(self) -> dict:
        return {"count": self._count, "map_seed": None if self._source.seed is None else self._source.seed.to_json()}

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        check_state(state, {"map_seed": self._own_state()["map_seed"]}, type(self).__name__)
        count = state["count"]
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"MapBatchIterator: malformed state, count must be an int >= 0, got {count!r}")
        self._count = count
