"""EpochStream: the batches one worker of one rank yields in one epoch.

Shared by the torch and tf.data adapters. Random-access sources are split by
batch: the index batches of the rank's epoch are computed (cheap), and a
worker fetches only the batches at its positions ``w, w + W, ...``. Other
sources are iterated in full and each worker keeps its share.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from batchup.adapters import _common

__all__ = ["EpochStream"]


class EpochStream:
    """The batches one DataLoader worker of one rank yields in one epoch (framework-free core).

    Parameters
    ----------
    source : AbstractDataSource or list of arrays
        Random-access sources are split by batch and each worker fetches only
        its batches; other sources are iterated in full by every worker,
        which keeps its share (correct, but each worker pays for every batch).
    batch_size : int
        Samples per batch.
    shuffle : None, int, bool, RandomState or Generator, default None
        ``None`` keeps the order; an int seeds epoch ``e``'s order from ``(seed, e)``.
    drop_last : bool, default False
        Leave out a final short batch of the rank's stream.
    shard : None, (rank, num_shards) or ShardSpec
        This rank's shard of every epoch (already resolved).
    structure : nested tuple/dict of int, optional
        Rearrange the flat batch tuple (each int is a position in it).
    **kwargs
        Passed to ``batch_indices_iterator`` / ``batch_iterator``.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> stream = EpochStream(ArrayDataSource([np.arange(7)]), 2)
    >>> [b[0].tolist() for b in stream.batches(epoch=0, worker=1, num_workers=2)]
    [[2, 3], [6]]
    """

    def __init__(
        self,
        source: Any,
        batch_size: int,
        *,
        shuffle: Any = None,
        drop_last: bool = False,
        shard: Any = None,
        structure: Any = None,
        **kwargs: Any,
    ) -> None:
        self.source = _common.as_source(source)
        self.batch_size = _common.batch_size_value(batch_size)
        self.seed = _common.resolve_seed(shuffle)
        self.drop_last = bool(drop_last)
        self.shard = shard
        self.structure = _common.check_structure(structure)
        self.kwargs = kwargs
        self.random_access = self.source.is_random_access
        if shard is not None and not self.random_access:
            raise ValueError(
                f"rank sharding needs a random-access source (equal batch counts per rank), got "
                f"{type(self.source).__name__} with shard={shard!r}"
            )
        self._with_number = self.random_access and _common.takes_batch_number(self.source)
        self._length = self._measure()

    def _measure(self) -> int | None:
        if self.random_access:
            it = _common.index_iterator(
                self.source, self.batch_size, self.seed, 0,
                drop_last=self.drop_last, shard=self.shard, kwargs=self.kwargs,
            )
            fn = getattr(it, "remaining", None)
            return fn() if fn is not None else None
        n = self.source.num_samples(**self.kwargs)
        if n is None or n == np.inf:
            return None
        return int(n) // self.batch_size if self.drop_last else -(-int(n) // self.batch_size)

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("the number of batches of this source is unknown or infinite")
        return self._length

    def batches(self, epoch: int, worker: int = 0, num_workers: int = 1) -> Iterator:
        """Yield the batches of ``epoch`` at positions ``worker, worker + num_workers, ...``."""
        if self.random_access:
            it = _common.index_iterator(
                self.source, self.batch_size, self.seed, epoch,
                drop_last=self.drop_last, shard=self.shard, kwargs=self.kwargs,
            )
            per_epoch = self._length or 0
            for k, indices in _common.strided(it, worker, num_workers):
                batch = _common.fetch(self.source, indices, epoch * per_epoch + k, self._with_number)
                yield _common.apply_structure(batch, self.structure)
        else:
            it = _common.batch_iterator(
                self.source, self.batch_size, self.seed, epoch, drop_last=self.drop_last, kwargs=self.kwargs,
            )
            for _, batch in _common.strided(it, worker, num_workers):
                yield _common.apply_structure(batch, self.structure)
