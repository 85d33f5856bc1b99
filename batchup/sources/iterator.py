"""IteratorDataSource: a source around an existing iterator of batches."""
from __future__ import annotations

from typing import Any

from batchup._checks import as_count
from batchup.sources.base import AbstractDataSource

__all__ = ["IteratorDataSource"]


class IteratorDataSource(AbstractDataSource):
    """Wrap an iterator of batches; usable once.

    Parameters
    ----------
    batch_iter : iterator
        Yields the batches.
    n_samples : None, int or np.inf, optional
        The sample count, if known.

    Notes
    -----
    ``batch_iterator`` ignores its arguments (including ``batch_size``) and
    returns the very iterator given, as BatchUp 0.2 does; it can therefore
    be consumed only once. Its position can be checkpointed only if the
    iterator itself has ``state_dict``.

    Examples
    --------
    >>> ds = IteratorDataSource(iter([(1,), (2,)]), 2)
    >>> list(ds.batch_iterator(64))
    [(1,), (2,)]
    """

    def __init__(self, batch_iter: Any, n_samples: Any = None) -> None:
        if not hasattr(batch_iter, "__next__"):
            raise TypeError(f"batch_iter must be an iterator, got {type(batch_iter).__name__}")
        if callable(n_samples):
            raise TypeError("n_samples must be None, an int or np.inf, not a callable")
        self.batch_iter = batch_iter
        self.n_samples = as_count("n_samples", n_samples)

    def num_samples(self, **kwargs: Any) -> Any:
        """Return the ``n_samples`` given at construction.

        Parameters
        ----------
        **kwargs
            Ignored.

        Returns
        -------
        int, float or None
            ``n_samples``: an int, ``np.inf`` or ``None`` (unknown).
        """
        return self.n_samples

    def batch_iterator(self, batch_size: int, **kwargs: Any) -> Any:
        """Return the wrapped iterator itself (BatchUp 0.2's behaviour).

        Parameters
        ----------
        batch_size : int
            Ignored: the wrapped iterator's batches are what they are.
        **kwargs
            Ignored.

        Returns
        -------
        iterator
            ``batch_iter``, already advanced by any earlier use.
        """
        return self.batch_iter
