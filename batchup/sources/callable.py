"""CallableDataSource: batches come from a function the user writes."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from batchup._checks import as_count
from batchup._iterator import WrappingIterator
from batchup.sources.base import AbstractDataSource

__all__ = ["CallableBatchIterator", "CallableDataSource"]


class CallableDataSource(AbstractDataSource):
    """A source whose ``batch_iterator`` calls ``batch_iterator_fn(batch_size, **kwargs)``.

    Parameters
    ----------
    batch_iterator_fn : callable
        Returns an iterator of batches when called with the batch size and
        the keyword arguments given to ``batch_iterator``.
    num_samples_fn : None, int, np.inf or callable, optional
        The sample count, or a function of the same keyword arguments
        returning it.

    Notes
    -----
    The returned iterator can be checkpointed: if the user's iterator has
    ``state_dict``/``load_state_dict`` those are used, otherwise batches are
    counted and a restore re-creates the iterator and skips that many.

    Examples
    --------
    >>> import numpy as np
    >>> def batches(batch_size, **kwargs):
    ...     for i in range(0, 5, batch_size):
    ...         yield (np.arange(i, min(i + batch_size, 5)),)
    >>> ds = CallableDataSource(batches, 5)
    >>> [b[0].tolist() for b in ds.batch_iterator(2)]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(self, batch_iterator_fn: Callable, num_samples_fn: Any = None) -> None:
        if not callable(batch_iterator_fn):
            raise TypeError(f"batch_iterator_fn must be callable, got {batch_iterator_fn!r}")
        self.batch_iterator_fn = batch_iterator_fn
        self.num_samples_fn = as_count("num_samples_fn", num_samples_fn)

    def num_samples(self, **kwargs: Any) -> Any:
        """Return the sample count: ``num_samples_fn(**kwargs)``, or the number given.

        Parameters
        ----------
        **kwargs
            Passed to ``num_samples_fn`` when it is a function.

        Returns
        -------
        int, float or None
            An int, ``np.inf`` (endless) or ``None`` (unknown).
        """
        if callable(self.num_samples_fn):
            return self.num_samples_fn(**kwargs)
        return self.num_samples_fn

    def batch_iterator(self, batch_size: int, **kwargs: Any) -> CallableBatchIterator:
        """Return an iterator over ``batch_iterator_fn(batch_size, **kwargs)``.

        Parameters
        ----------
        batch_size : int
            Passed to ``batch_iterator_fn``.
        **kwargs
            Passed to ``batch_iterator_fn`` as they are (``shuffle``,
            ``epoch`` or options of your own).

        Returns
        -------
        CallableBatchIterator
            Yields the function's batches; resumable (see the Notes above).
        """
        return CallableBatchIterator(self, batch_size, kwargs)


class CallableBatchIterator(WrappingIterator):
    """Wrap the user's iterator, counting batches so the position can be restored.

    Parameters
    ----------
    source : CallableDataSource
        The source whose function makes the iterator (again, on restore).
    batch_size : int
        Passed to the function.
    kwargs : dict
        Passed to the function as keyword arguments.
    """

    KIND = "callable"

    def __init__(self, source: CallableDataSource, batch_size: Any, kwargs: dict) -> None:
        self._make = lambda: iter(source.batch_iterator_fn(batch_size, **kwargs))
        super().__init__(self._make())
        self._count = 0

    def __next__(self) -> Any:
        batch = next(self._inner)
        self._count += 1
        return batch

    def _inner_state(self) -> Any:
        fn = getattr(self._inner, "state_dict", None)
        return fn() if fn is not None else None

    def _own_state(self) -> dict:
        return {"count": self._count}

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        count = state["count"]
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"CallableBatchIterator: malformed state, count must be an int >= 0, got {count!r}")
        self._count = count

    def _load_inner_state(self, state: Any) -> None:
        self._inner = self._make()
        if state is not None and hasattr(self._inner, "load_state_dict"):
            self._inner.load_state_dict(state)
            return
        for i in range(self._count):
            try:
                next(self._inner)
            except StopIteration:
                raise ValueError(
                    f"malformed state: the iterator ended after {i} batches, "
                    f"before the {self._count} recorded in the state"
                ) from None
