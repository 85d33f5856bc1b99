"""MapDataSource: apply a function to every batch of another source."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from batchup import _rng
from batchup._iterator import StatefulIterator, check_state
from batchup.sources.base import AbstractDataSource, _load_into, _state_of

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
        whatever thread or process the batch is made.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> ds = ArrayDataSource([np.arange(6)]).map(lambda x: (x * 2,))
    >>> [b[0].tolist() for b in ds.batch_iterator(4)]
    [[0, 2, 4, 6], [8, 10]]
    """

    def __init__(self, source: AbstractDataSource, fn: Callable, *, seed: Any = None) -> None:
        if not isinstance(source, AbstractDataSource):
            raise TypeError(f"source must be a data source, got {type(source).__name__}")
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        self.source: Any = source
        self.fn = fn
        self.seed = None if seed is None else _rng.SeedKey(seed) if not isinstance(seed, _rng.SeedKey) else seed
        self._random_access = source.is_random_access

    @property
    def is_random_access(self) -> bool:
        return self._random_access

    def num_samples(self, **kwargs: Any) -> Any:
        return self.source.num_samples(**kwargs)

    def apply(self, batch: Any, batch_number: int | None = None) -> Any:
        """Apply the function to one batch (``batch_number`` selects its generator)."""
        if self.seed is None:
            return self.fn(*batch)
        if batch_number is None:
            raise ValueError("a seeded map needs the batch number to derive its generator")
        return self.fn(*batch, rng=self.seed.generator(batch_number))

    def batch_iterator(self, batch_size: int, **kwargs: Any) -> MapBatchIterator:
        return MapBatchIterator(self, self.source.batch_iterator(batch_size, **kwargs))

    def _require_random_access(self) -> None:
        if not self._random_access:
            raise TypeError("this MapDataSource wraps a source that is not random access")

    def batch_indices_iterator(self, batch_size: int, **kwargs: Any) -> Any:
        self._require_random_access()
        return self.source.batch_indices_iterator(batch_size, **kwargs)

    def _inner(self, method: str, indices: Any, batch_number: int | None) -> Any:
        self._require_random_access()
        fetch = getattr(self.source, method)
        if isinstance(self.source, MapDataSource):
            # A nested map numbers batches the same way, so it gets the same batch number.
            return fetch(indices, batch_number)
        return fetch(indices)

    def samples_by_indices_nomapping(self, indices: Any, batch_number: int | None = None) -> Any:
        batch = self._inner("samples_by_indices_nomapping", indices, batch_number)
        return self.apply(batch, batch_number)

    def samples_by_indices(self, indices: Any, batch_number: int | None = None) -> Any:
        return self.apply(self._inner("samples_by_indices", indices, batch_number), batch_number)


class MapBatchIterator(StatefulIterator):
    """Apply a :class:`MapDataSource`'s function to each batch of an inner iterator."""

    KIND = "map"

    def __init__(self, source: MapDataSource, inner: Any) -> None:
        self._source = source
        self._inner = inner
        self._count = 0

    def __next__(self) -> Any:
        batch = next(self._inner)
        number = self._count
        self._count = number + 1
        return self._source.apply(batch, number)

    @property
    def last_padding(self) -> Any:
        """For a sharded iterator: mask of wrap-around duplicates in the last batch, else None."""
        return getattr(self._inner, "last_padding", None)

    def remaining(self) -> Any:
        fn = getattr(self._inner, "remaining", None)
        return fn() if fn is not None else None

    def __len__(self) -> int:
        return len(self._inner)

    def state_dict(self) -> dict:
        return {"kind": self.KIND, "count": self._count, "inner": _state_of(self._inner)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(state, {"kind": self.KIND}, type(self).__name__)
        _load_into(self._inner, state["inner"])
        self._count = int(state["count"])
