"""The sampler contract: which sample indices form each batch, as a plan.

A sampler decides WHICH sample indices form each batch and in WHAT order;
it knows nothing about the data. Its one essential method is
:meth:`AbstractSampler.plan`, which returns a
:class:`~batchup.samplers.plan.BatchPlan` for a batch size and the
iteration options (shuffle, drop_last, shard, epoch). BatchUp 0.2's iterator
methods (``in_order_indices_batch_iterator`` and
``shuffled_indices_batch_iterator``) remain, and for batchup's own samplers
they are simply the plan's iterator.
"""
from __future__ import annotations

from typing import Any

from batchup.samplers.plan import BatchPlan, PlanOptions

__all__ = ["AbstractSampler", "num_batches"]


def num_batches(n: int, batch_size: int) -> int:
    """Return the number of batches needed to cover ``n`` samples.

    Parameters
    ----------
    n : int
        The number of samples, ``>= 0``.
    batch_size : int
        Samples per batch, ``>= 1``.

    Returns
    -------
    int
        ``ceil(n / batch_size)``: the last batch may be short.

    Examples
    --------
    >>> num_batches(10, 3)
    4
    >>> num_batches(0, 3)
    0
    """
    return (n + batch_size - 1) // batch_size


class AbstractSampler:
    """Base class of samplers.

    A sampler yields batches of *absolute* sample indices (1-D int64
    arrays). ``map_indices`` translates positions within the sampler's own
    index space (for example positions within a subset) into absolute
    indices.

    Subclasses implement :meth:`plan` (batchup's protocol: random access,
    sharding, exact resume) or, as in BatchUp 0.2, the two iterator methods,
    which the default :meth:`plan` then walks in order. Samplers that
    dictate the batch size themselves expose it as ``batch_size`` (an int,
    or ``None`` when sizes vary).
    """

    def num_indices_generated(self) -> Any:
        """Return how many indices one run yields: an int, ``np.inf`` or ``None``.

        Returns
        -------
        int, float or None
            The count over all ``repeats`` epochs; ``np.inf`` when endless
            (``repeats=-1``, a weighted stream); ``None`` when unknown.
        """
        raise NotImplementedError("num_indices_generated is abstract in AbstractSampler")

    def map_indices(self, indices: Any) -> Any:
        """Map positions in the sampler's index space to absolute indices.

        Parameters
        ----------
        indices : numpy.ndarray of int
            Positions in the sampler's index space (for a subset sampler,
            positions within the subset).

        Returns
        -------
        numpy.ndarray of int
            The absolute sample indices; the base class returns ``indices``
            unchanged.
        """
        return indices

    def plan(
        self, batch_size: Any, shuffle: Any = None, *, drop_last: bool = False, shard: Any = None, epoch: int = 0
    ) -> BatchPlan:
        """Return the plan of one run: which indices form every batch.

        Parameters
        ----------
        batch_size : int or None
            Samples per batch (``None`` only for samplers that set it themselves).
        shuffle : None, bool, int, SeedKey, RandomState or Generator
            ``None``/``False`` in order; an int seed; an RNG object to draw from.
        drop_last : bool, default False
            Leave out a final short batch.
        shard : None, (rank, num_shards) or ShardSpec
            This rank's part of every epoch.
        epoch : int, default 0
            Which pass over the data (see :class:`~batchup.samplers.plan.PlanOptions`).

        Returns
        -------
        BatchPlan
            The base class walks :meth:`in_order_indices_batch_iterator` or
            :meth:`shuffled_indices_batch_iterator` in order (an
            :class:`~batchup.samplers.sequential.IteratorPlan`).
        """
        from batchup.samplers.sequential import IteratorPlan  # imported here: it builds on this module

        return IteratorPlan(self, batch_size, PlanOptions.make(shuffle, drop_last, shard, epoch))

    def in_order_indices_batch_iterator(self, batch_size: int, **kwargs: Any) -> Any:
        """Return an iterator of index batches in order.

        BatchUp 0.2's protocol; batchup's samplers return their plan's
        iterator (see :class:`PlannedSampler`).

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        **kwargs
            Keyword-only options: ``drop_last``, ``shard`` and ``epoch``, as
            for :meth:`plan`.

        Returns
        -------
        iterator of numpy.ndarray
            Yields 1-D int arrays of absolute sample indices.
        """
        raise NotImplementedError("in_order_indices_batch_iterator is abstract in AbstractSampler")

    def shuffled_indices_batch_iterator(self, batch_size: int, shuffle_rng: Any, **kwargs: Any) -> Any:
        """Return an iterator of index batches in an order drawn from ``shuffle_rng``.

        BatchUp 0.2's protocol; batchup's samplers return their plan's
        iterator (see :class:`PlannedSampler`).

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        shuffle_rng : int, SeedKey, RandomState or Generator
            An int seed, or an RNG object that is drawn from.
        **kwargs
            Keyword-only options: ``drop_last``, ``shard`` and ``epoch``, as
            for :meth:`plan`.

        Returns
        -------
        iterator of numpy.ndarray
            Yields 1-D int arrays of absolute sample indices.
        """
        raise NotImplementedError("shuffled_indices_batch_iterator is abstract in AbstractSampler")


class PlannedSampler(AbstractSampler):
    """Base of batchup's own samplers: the iterator methods are the plan's iterator.

    Both iterator methods take the keyword-only options ``drop_last`` and
    ``shard`` (and ``epoch``), and return the plan's
    :class:`~batchup.samplers.plan.IndexBatchIterator` (or, for an RNG
    object, the cursor that draws in BatchUp 0.2's order).
    """

    def in_order_indices_batch_iterator(self, batch_size: int, **kwargs: Any) -> Any:
        return self.plan(batch_size, None, **kwargs).iterator()

    def shuffled_indices_batch_iterator(self, batch_size: int, shuffle_rng: Any, **kwargs: Any) -> Any:
        return self.plan(batch_size, shuffle_rng, **kwargs).iterator()
