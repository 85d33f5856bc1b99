"""Padding: a batch of variable-length samples as one rectangular array.

:func:`pad_batch` turns a ragged batch into an array of shape
``(batch, L, *features)`` plus the length of every sample (and a boolean
mask on request). It makes one ``np.full`` and one boolean-mask assignment,
whatever the number of samples. :class:`PadBatch` is the same as a
picklable map function for a data source, so it also runs in process pools.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup._checks import is_int, positive_int
from batchup.sequences.ragged import RaggedArray, _offsets_of, _run_positions, as_ragged

__all__ = ["PadBatch", "pad_batch"]


def pad_batch(
    batch: Any,
    pad_value: Any = 0,
    pad_to_multiple_of: int | None = None,
    max_length: int | None = None,
    *,
    return_mask: bool = False,
    truncate: bool = False,
) -> tuple:
    """Pad a batch of variable-length samples to one length.

    Parameters
    ----------
    batch : RaggedArray or list of array-like
        The samples; each has shape ``(length_i, *features)``.
    pad_value : scalar or array-like, default 0
        What padded positions hold; it must convert to the samples' dtype
        without changing value and broadcast to the feature shape.
    pad_to_multiple_of : int, optional
        Round the padded length up to a multiple of this (at least one
        multiple, also for a batch of empty samples), so that compiled
        models (XLA) see few distinct shapes.
    max_length : int, optional
        The most the padded length may be. A longer sample raises
        ``ValueError`` unless ``truncate=True``. With ``pad_to_multiple_of``
        it must be a multiple of it.
    return_mask : bool, default False
        Keyword-only: also return the boolean mask of real entries.
    truncate : bool, default False
        Keyword-only: cut samples longer than ``max_length`` to their first
        ``max_length`` entries instead of raising.

    Returns
    -------
    padded : ndarray, shape ``(B, L, *features)``
        A new array of the samples' dtype. ``L`` is the longest sample's
        length, rounded up to ``pad_to_multiple_of`` and capped at
        ``max_length``. For one fixed shape, pass
        ``pad_to_multiple_of=max_length=L``.
    lengths : ndarray of int64, shape (B,)
        The entries of each sample in ``padded`` (after truncation).
    mask : ndarray of bool, shape (B, L)
        Only with ``return_mask=True``: ``mask[b, t]`` is ``t < lengths[b]``.

    Raises
    ------
    TypeError
        If ``batch`` is not a RaggedArray or a list of arrays, or an integer
        argument is not an int.
    ValueError
        If ``pad_to_multiple_of`` or ``max_length`` is not positive,
        ``max_length`` is not a multiple of ``pad_to_multiple_of``, a sample
        is longer than ``max_length`` without ``truncate`` (the message
        names the sample and its length), or ``pad_value`` does not fit the
        dtype or the feature shape.

    See Also
    --------
    PadBatch : the same as a picklable map function for a source.
    pack_sequences : several samples per row instead of one, with less padding.

    Examples
    --------
    >>> padded, lengths, mask = pad_batch([[1, 2, 3], [4]], return_mask=True)
    >>> padded.tolist(), lengths.tolist()
    ([[1, 2, 3], [4, 0, 0]], [3, 1])
    >>> mask.tolist()
    [[True, True, True], [True, False, False]]
    >>> pad_batch([[1, 2, 3], [4]], pad_value=-1, pad_to_multiple_of=4)[0].tolist()
    [[1, 2, 3, -1], [4, -1, -1, -1]]
    >>> pad_batch([[1, 2, 3], [4]], max_length=2, truncate=True)[0].tolist()
    [[1, 2], [4, 0]]
    """
    multiple, cap = _check_lengths_args(pad_to_multiple_of, max_length)
    ra = as_ragged(batch)
    fill = _fill_value(pad_value, ra)
    lengths = ra.lengths
    longest = int(lengths.max()) if len(lengths) else 0
    if cap is not None and longest > cap and not truncate:
        i = int(np.argmax(lengths > cap))
        raise ValueError(
            f"sample {i} has length {int(lengths[i])}, more than max_length={cap}; "
            "pass truncate=True to keep only its first max_length entries"
        )
    target = longest
    if multiple is not None:
        target = max(multiple, -(-target // multiple) * multiple)
    if cap is not None:
        target = min(target, cap)
    kept = np.minimum(lengths, target)
    mask = np.arange(target) < kept[:, None]
    padded = np.full((len(ra), target) + ra.feature_shape, fill, dtype=ra.dtype)
    if target >= longest:
        padded[mask] = ra.values
    else:
        new_offsets = _offsets_of(kept)
        padded[mask] = np.take(ra.values, _run_positions(ra.offsets[:-1], kept, new_offsets), axis=0)
    if return_mask:
        return padded, kept, mask
    return padded, kept


class PadBatch:
    """A map function that pads one ragged element of every batch.

    ``source.map(PadBatch())`` replaces element ``position`` of each batch
    (a RaggedArray batch) by the outputs of :func:`pad_batch`, in place:
    ``(x, y)`` becomes ``(padded, lengths, y)``, or
    ``(padded, lengths, mask, y)`` with ``return_mask=True``. It is a plain
    picklable object, so it also works in process pools (where a lambda
    does not, under the ``spawn`` start method).

    Parameters
    ----------
    pad_value, pad_to_multiple_of, max_length
        As in :func:`pad_batch`; checked here, when the map is built.
    position : int, default 0
        Keyword-only: which element of the batch to pad.
    return_mask, truncate : bool, default False
        Keyword-only, as in :func:`pad_batch`.

    Examples
    --------
    >>> import numpy as np
    >>> x = RaggedArray.from_list([[1, 2, 3], [4]])
    >>> padded, lengths, y = PadBatch(pad_value=-1)(x, np.array([0, 1]))
    >>> padded.tolist(), lengths.tolist(), y.tolist()
    ([[1, 2, 3], [4, -1, -1]], [3, 1], [0, 1])
    """

    def __init__(
        self,
        pad_value: Any = 0,
        pad_to_multiple_of: int | None = None,
        max_length: int | None = None,
        *,
        position: int = 0,
        return_mask: bool = False,
        truncate: bool = False,
    ) -> None:
        _check_lengths_args(pad_to_multiple_of, max_length)
        if not is_int(position):
            raise TypeError(f"position must be an int, got {position!r}")
        self.pad_value = pad_value
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_length = max_length
        self.position = int(position)
        self.return_mask = bool(return_mask)
        self.truncate = bool(truncate)

    def __call__(self, *batch: Any) -> tuple:
        """Return the batch with element ``position`` replaced by its padded form.

        Parameters
        ----------
        *batch : array or RaggedArray
            The batch's elements; the one at ``position`` is ragged.

        Returns
        -------
        tuple
            The other elements unchanged around ``padded, lengths`` (and
            ``mask`` with ``return_mask=True``), as :func:`pad_batch` returns them.

        Raises
        ------
        IndexError
            If the batch has no element ``position``.
        """
        n = len(batch)
        if not -n <= self.position < n:
            raise IndexError(f"PadBatch(position={self.position}) got a batch of {n} elements")
        p = self.position % n
        out = pad_batch(
            batch[p], self.pad_value, self.pad_to_multiple_of, self.max_length,
            return_mask=self.return_mask, truncate=self.truncate,
        )
        return batch[:p] + out + batch[p + 1 :]

    def __repr__(self) -> str:
        return (
            f"PadBatch(pad_value={self.pad_value!r}, pad_to_multiple_of={self.pad_to_multiple_of!r}, "
            f"max_length={self.max_length!r}, position={self.position}, return_mask={self.return_mask}, "
            f"truncate={self.truncate})"
        )


def _check_lengths_args(pad_to_multiple_of: Any, max_length: Any) -> tuple:
    multiple = None if pad_to_multiple_of is None else positive_int("pad_to_multiple_of", pad_to_multiple_of)
    cap = None if max_length is None else positive_int("max_length", max_length)
    if multiple is not None and cap is not None and cap % multiple:
        raise ValueError(
            f"max_length must be a multiple of pad_to_multiple_of: got max_length={cap}, "
            f"pad_to_multiple_of={multiple}"
        )
    return multiple, cap


def _fill_value(pad_value: Any, ra: RaggedArray) -> np.ndarray:
    """Return ``pad_value`` in the samples' dtype, checking it keeps its value and broadcasts."""
    given = np.asarray(pad_value)
    if given.dtype.hasobject:
        raise TypeError(f"pad_value must be a number or an array of numbers, got {pad_value!r}")
    fill = given.astype(ra.dtype)
    equal_nan = fill.dtype.kind in "fc" and given.dtype.kind in "fc"
    with np.errstate(invalid="ignore"):
        same = np.array_equal(fill, given, equal_nan=equal_nan)
    if not same:
        raise ValueError(f"pad_value {pad_value!r} does not fit the samples' dtype {ra.dtype} (it would become {fill.tolist()!r})")
    try:
        np.broadcast_to(fill, ra.feature_shape)
    except ValueError:
        raise ValueError(
            f"pad_value of shape {fill.shape} does not broadcast to the samples' feature shape {ra.feature_shape}"
        ) from None
    return fill
