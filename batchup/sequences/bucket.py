"""Padding to bucket lengths: a few fixed padded shapes for compiled models.

:class:`~batchup.samplers.BucketSampler` batches samples of similar length;
:class:`PadToBucket` pads every batch to the padded length of its bucket
(the smallest of the sampler's :attr:`~batchup.samplers.BucketSampler.bucket_lengths`
that holds the batch's longest sample). Every batch of a bucket then has
the same length, whichever samples it holds and whichever rank draws it, so
a compiled model (XLA under JAX, ``tf.function``, ``torch.compile``) sees
only the shapes listed by :meth:`~batchup.samplers.BucketSampler.batch_shapes`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup._checks import is_int
from batchup.samplers._buckets import check_boundaries
from batchup.samplers.bucket import BucketSampler
from batchup.sequences.padding import pad_batch
from batchup.sequences.ragged import as_ragged

__all__ = ["BucketSampler", "PadToBucket"]


class PadToBucket:
    """A map function that pads one ragged element of every batch to its bucket's length.

    ``source.map(PadToBucket(sampler))`` replaces element ``position`` of
    each batch by the outputs of :func:`~batchup.sequences.pad_batch` with
    the padded length fixed to the smallest of ``lengths`` that is at least
    the batch's longest sample: ``(x, y)`` becomes ``(padded, lengths, y)``,
    or ``(padded, lengths, mask, y)`` with ``return_mask=True``. A plain
    picklable object, so it also works in process pools.

    Parameters
    ----------
    lengths : BucketSampler or 1-D array-like of int
        The padded lengths to choose from, increasing; a sampler stands for
        its ``bucket_lengths``.
    pad_value : scalar or array-like, default 0
        As in :func:`~batchup.sequences.pad_batch`.
    position : int, default 0
        Keyword-only: which element of the batch to pad.
    return_mask : bool, default False
        Keyword-only: also return the boolean mask of real entries.

    Raises
    ------
    TypeError
        If ``lengths`` are not integers or ``position`` is not an int.
    ValueError
        If ``lengths`` are empty, not positive or not increasing; when
        called, if a sample is longer than the largest length (the message
        names it).

    Examples
    --------
    >>> from batchup.sequences import RaggedArray
    >>> pad = PadToBucket([4, 10])
    >>> x, lengths = pad(RaggedArray.from_list([[1, 2], [3, 4, 5]]))
    >>> x.shape, lengths.tolist()
    ((2, 4), [2, 3])
    >>> pad(RaggedArray.from_list([[1] * 7]))[0].shape
    (1, 10)
    """

    def __init__(self, lengths: Any, pad_value: Any = 0, *, position: int = 0, return_mask: bool = False) -> None:
        if isinstance(lengths, BucketSampler):
            lengths = lengths.bucket_lengths
        self.lengths = check_boundaries(lengths).copy()
        if not is_int(position):
            raise TypeError(f"position must be an int, got {position!r}")
        self.pad_value = pad_value
        self.position = int(position)
        self.return_mask = bool(return_mask)

    def padded_length(self, longest: int) -> int:
        """Return the padded length of a batch whose longest sample has ``longest`` entries.

        Parameters
        ----------
        longest : int
            The length of the batch's longest sample (0 for a batch of empty
            samples).

        Returns
        -------
        int
            The smallest of ``lengths`` that is at least ``longest``.

        Raises
        ------
        ValueError
            If ``longest`` is more than the largest of ``lengths``.

        Examples
        --------
        >>> pad = PadToBucket([4, 10])
        >>> pad.padded_length(4), pad.padded_length(5)
        (4, 10)
        """
        k = int(np.searchsorted(self.lengths, longest, side="left"))
        if k == len(self.lengths):
            raise ValueError(
                f"a sample has length {longest}, more than the largest bucket length {int(self.lengths[-1])}"
            )
        return int(self.lengths[k])

    def __call__(self, *batch: Any) -> tuple:
        """Pad element ``position`` of ``batch`` to its bucket's length; keep the others.

        Parameters
        ----------
        *batch : array-like
            The elements of one batch, as ``source.map`` passes them. Element
            ``position`` is the ragged one: a ``RaggedArray``, or a list,
            tuple or object array of samples of shape ``(length_i, *features)``.

        Returns
        -------
        tuple
            ``batch`` with the ragged element replaced by ``padded, lengths``
            (or ``padded, lengths, mask`` with ``return_mask=True``), as
            :func:`~batchup.sequences.pad_batch` returns them: ``padded`` has
            shape ``(B, padded_length(longest), *features)``.

        Raises
        ------
        IndexError
            If ``position`` is not an element of ``batch``.
        ValueError
            If a sample is longer than the largest of ``lengths`` (the
            message names the sample).

        Examples
        --------
        >>> import numpy as np
        >>> from batchup.sequences import RaggedArray
        >>> pad = PadToBucket([4, 10], -1, return_mask=True)
        >>> x, lengths, mask, y = pad(RaggedArray.from_list([[1, 2], [3, 4, 5]]), np.array([0, 1]))
        >>> x.tolist(), lengths.tolist(), y.tolist()
        ([[1, 2, -1, -1], [3, 4, 5, -1]], [2, 3], [0, 1])
        >>> mask.tolist()
        [[True, True, False, False], [True, True, True, False]]
        """
        n = len(batch)
        if not -n <= self.position < n:
            raise IndexError(f"PadToBucket(position={self.position}) got a batch of {n} elements")
        p = self.position % n
        ra = as_ragged(batch[p])
        sample_lengths = ra.lengths
        longest = int(sample_lengths.max()) if len(sample_lengths) else 0
        if longest > self.lengths[-1]:
            i = int(np.argmax(sample_lengths > self.lengths[-1]))
            raise ValueError(
                f"sample {i} of the batch has length {int(sample_lengths[i])}, more than the largest bucket length "
                f"{int(self.lengths[-1])}; build PadToBucket from the sampler that made the batches"
            )
        target = self.padded_length(longest)
        out = pad_batch(ra, self.pad_value, target, target, return_mask=self.return_mask)
        return batch[:p] + out + batch[p + 1 :]

    def __repr__(self) -> str:
        return (f"PadToBucket({self.lengths.tolist()!r}, pad_value={self.pad_value!r}, position={self.position}, "
                f"return_mask={self.return_mask})")
