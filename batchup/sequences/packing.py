"""Packing: several variable-length samples per row of a fixed length.

Padding every sample to the longest wastes the rows of short samples.
Packing places several samples one after another in rows of ``length``
entries, chosen by first-fit decreasing (longest sample first, each into the
first row with room), and marks them the way T5-style and Grain packing do:
``segment_ids`` numbers the samples of a row from 1 (0 is padding) and
``positions`` counts from 0 inside each sample, so attention masks and
position embeddings stay per sample.

The row assignment is a Python loop over the rows each run of equal
lengths touches (a max-tree finds the first row with room in O(log n)); the
entries are copied with one boolean-mask assignment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from batchup._checks import positive_int
from batchup.sequences.padding import _fill_value
from batchup.sequences.ragged import RaggedArray, _offsets_of, _run_positions, as_ragged

__all__ = ["PackSequences", "PackedBatch", "pack_sequences"]

_TOO_LONG = ("error", "truncate", "drop")


@dataclass(frozen=True, eq=False)
class PackedBatch:
    """The result of :func:`pack_sequences`: packed rows plus where every sample went.

    :func:`pack_sequences` builds it; each parameter is kept as the
    attribute of the same name (the object is frozen).

    Parameters
    ----------
    tokens : ndarray, shape ``(R, length, *features)``
        The packed entries; padding holds ``pad_value``.
    segment_ids : ndarray of int32, shape (R, length)
        1 for the first sample of a row, 2 for the second, ...; 0 for padding.
    positions : ndarray of int32, shape (R, length)
        The index of each entry inside its sample (0 in padding).
    rows : ndarray of int64, shape (N,)
        The row of each input sample; -1 if it was dropped.
    starts : ndarray of int64, shape (N,)
        The column where each sample starts in its row; -1 if dropped.
    lengths : ndarray of int64, shape (N,)
        The entries of each sample in the rows (less than its length if it
        was truncated, 0 if dropped).
    input_lengths : ndarray of int64, shape (N,)
        The lengths of the input samples.
    """

    tokens: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray
    rows: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    input_lengths: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Boolean array of shape ``(R, length)``: True where an entry is real."""
        return self.segment_ids > 0

    def pack(self, other: Any, pad_value: Any = 0) -> np.ndarray:
        """Return ``other`` packed into the same layout as :attr:`tokens`.

        For companion arrays of the same lengths: the targets of a language
        model, per-token weights, a second feature stream.

        Parameters
        ----------
        other : RaggedArray or list of arrays
            One sample per packed sample, each of the same length as the
            packed one (truncated and dropped alike).
        pad_value : scalar, default 0
            The value of padding entries.

        Returns
        -------
        numpy.ndarray
            Shape ``(R, length, *features of other)``, laid out as :attr:`tokens`.

        Raises
        ------
        ValueError
            If ``other`` has another number of samples, or a sample whose
            length differs from the packed sample's input length (the
            message names it).
        """
        return self._pack(other, pad_value, "other")

    def _pack(self, other: Any, pad_value: Any, name: str) -> np.ndarray:
        ra = as_ragged(other, name)
        if len(ra) != len(self.input_lengths):
            raise ValueError(f"{name} has {len(ra)} samples but {len(self.input_lengths)} samples were packed")
        lens = ra.lengths
        bad = np.flatnonzero(lens != self.input_lengths)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"sample {i} of {name} has length {int(lens[i])} but the packed sample {i} has length "
                f"{int(self.input_lengths[i])}; only arrays of the same lengths share a packing"
            )
        return _fill_rows(ra, self.rows, self.lengths, self.tokens.shape[:2], _fill_value(pad_value, ra))[0]

    def unpack(self, packed: Any = None) -> RaggedArray:
        """Return the samples back from ``packed`` (default :attr:`tokens`), in input order.

        ``packed`` is any array whose first two axes are ``(R, length)``,
        for example a model's per-token outputs. Dropped samples come back
        empty and truncated ones shortened, as :attr:`lengths` says.

        Parameters
        ----------
        packed : array-like, optional
            An array of shape ``(R, length, ...)``; default :attr:`tokens`.

        Returns
        -------
        RaggedArray
            One sample per input sample, in input order.

        Raises
        ------
        ValueError
            If ``packed`` does not have the shape ``(R, length)`` in its first
            two axes.
        """
        arr = self.tokens if packed is None else np.asarray(packed)
        shape = self.tokens.shape[:2]
        if arr.shape[:2] != shape:
            raise ValueError(f"packed must have shape {shape} in its first two axes, got {arr.shape}")
        width = shape[1]
        flat = arr.reshape((shape[0] * width,) + arr.shape[2:])
        offsets = _offsets_of(self.lengths)
        starts = np.where(self.rows >= 0, self.rows * width + self.starts, 0)
        return RaggedArray._trusted(np.take(flat, _run_positions(starts, self.lengths, offsets), axis=0), offsets)


def pack_sequences(batch: Any, length: int, *, too_long: str = "error", pad_value: Any = 0) -> PackedBatch:
    """Pack variable-length samples into rows of ``length`` entries, first-fit decreasing.

    Samples are placed longest first (ties: batch order), each into the
    first row that still has room, opening a new row only when none has.
    Inside a row the samples keep their batch order, one after another
    from column 0; the rest of the row is padding.

    Parameters
    ----------
    batch : RaggedArray or list of array-like
        The samples, each of shape ``(length_i, *features)`` with
        ``length_i >= 1``.
    length : int
        The entries per row.
    too_long : {'error', 'truncate', 'drop'}, default 'error'
        Keyword-only: what happens to a sample longer than ``length``:
        raise ``ValueError`` naming it, keep its first ``length`` entries
        (it fills a row of its own), or leave it out (``rows[i] == -1``).
    pad_value : scalar or array-like, default 0
        Keyword-only: what padding entries of :attr:`PackedBatch.tokens`
        hold (as in :func:`pad_batch`).

    Returns
    -------
    PackedBatch
        ``tokens`` of shape ``(R, length, *features)``, ``segment_ids`` and
        ``positions`` of shape ``(R, length)``, and per sample its ``rows``,
        ``starts`` and packed ``lengths``. ``R`` is the number of rows
        first-fit decreasing opened: it varies from batch to batch.

    Raises
    ------
    TypeError
        If ``batch`` is not ragged or ``length`` is not an int.
    ValueError
        If ``length`` is not positive, ``too_long`` is unknown, a sample is
        empty, or a sample is longer than ``length`` with
        ``too_long='error'`` (the messages name the sample and its length).

    See Also
    --------
    PackSequences : the same as a picklable map function for a source.
    pad_batch : one sample per row.

    Notes
    -----
    The output is a pure function of the lengths and the entries: the same
    batch packs the same way on every machine. ``segment_ids`` and
    ``positions`` are int32, as most attention kernels take them.

    Examples
    --------
    >>> p = pack_sequences([[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]], length=5)
    >>> p.tokens.tolist()
    [[6, 7, 8, 9, 10], [1, 2, 3, 4, 5]]
    >>> p.segment_ids.tolist()
    [[1, 2, 2, 2, 2], [1, 1, 1, 2, 2]]
    >>> p.positions.tolist()
    [[0, 0, 1, 2, 3], [0, 1, 2, 0, 1]]
    >>> p.rows.tolist(), p.starts.tolist()
    ([1, 1, 0, 0], [0, 3, 0, 1])
    """
    width = positive_int("length", length)
    if too_long not in _TOO_LONG:
        raise ValueError(f"too_long must be one of {list(_TOO_LONG)}, got {too_long!r}")
    ra = as_ragged(batch)
    fill = _fill_value(pad_value, ra)
    input_lengths = ra.lengths
    empty = np.flatnonzero(input_lengths == 0)
    if empty.size:
        raise ValueError(
            f"sample {int(empty[0])} has length 0: a packed row cannot hold an empty segment; "
            "leave empty samples out of the source (e.g. indices=np.flatnonzero(ra.lengths > 0))"
        )
    over = input_lengths > width
    if over.any():
        if too_long == "error":
            i = int(np.argmax(over))
            raise ValueError(
                f"sample {i} has length {int(input_lengths[i])}, longer than length={width}; "
                "pass too_long='truncate' to keep its first entries or too_long='drop' to leave it out"
            )
        placed = np.where(over, width if too_long == "truncate" else 0, input_lengths)
    else:
        placed = input_lengths
    rows = _first_fit_decreasing(placed, width)
    num_rows = int(rows.max()) + 1 if len(rows) else 0
    tokens, segment_ids, positions, starts = _fill_rows(ra, rows, placed, (num_rows, width), fill, with_ids=True)
    return PackedBatch(tokens, segment_ids, positions, rows, starts, placed, input_lengths)


class PackSequences:
    """A map function that packs every element of a batch with one shared layout.

    ``source.map(PackSequences(length))`` turns a batch of ragged elements
    of the same lengths, such as ``(inputs, targets)``, into
    ``(inputs_packed, targets_packed, segment_ids, positions)``: the first
    element decides the packing (:func:`pack_sequences`), the others follow
    it (:meth:`PackedBatch.pack`). Per-sample arrays (a label per sample)
    cannot follow samples into packed rows, so a batch element that is not
    ragged raises ``TypeError``; call :func:`pack_sequences` yourself and
    use :attr:`PackedBatch.rows` to place them. It is a plain picklable
    object, so it also works in process pools.

    Parameters
    ----------
    length : int
        The entries per row.
    too_long, pad_value
        Keyword-only, as in :func:`pack_sequences`.

    Examples
    --------
    >>> x = RaggedArray.from_list([[1, 2, 3], [4, 5]])
    >>> packed_x, packed_y, seg, pos = PackSequences(6)(x, x[np.array([0, 1])])
    >>> packed_x.tolist(), seg.tolist()
    ([[1, 2, 3, 4, 5, 0]], [[1, 1, 1, 2, 2, 0]])
    """

    def __init__(self, length: int, *, too_long: str = "error", pad_value: Any = 0) -> None:
        self.length = positive_int("length", length)
        if too_long not in _TOO_LONG:
            raise ValueError(f"too_long must be one of {list(_TOO_LONG)}, got {too_long!r}")
        self.too_long = too_long
        self.pad_value = pad_value

    def __call__(self, *batch: Any) -> tuple:
        """Pack the elements of one batch with the layout of the first.

        Parameters
        ----------
        *batch : RaggedArray or list of arrays
            The batch's ragged elements, all with the same sample lengths.

        Returns
        -------
        tuple of numpy.ndarray
            ``(first_packed, *others_packed, segment_ids, positions)``.

        Raises
        ------
        TypeError
            If an element is not ragged (a per-sample array).
        ValueError
            If the batch is empty, or an element's lengths differ from the first's.
        """
        if not batch:
            raise ValueError("PackSequences got an empty batch (no elements)")
        for i, element in enumerate(batch):
            if not isinstance(element, (RaggedArray, list, tuple)):
                raise TypeError(
                    f"batch element {i} is a {type(element).__name__}, not a ragged batch: PackSequences packs "
                    "every element, and per-sample arrays cannot follow samples into packed rows; call "
                    "pack_sequences() and use PackedBatch.rows to place them"
                )
        packed = pack_sequences(batch[0], self.length, too_long=self.too_long, pad_value=self.pad_value)
        others = tuple(
            packed._pack(element, self.pad_value, f"batch element {i}") for i, element in enumerate(batch[1:], start=1)
        )
        return (packed.tokens,) + others + (packed.segment_ids, packed.positions)

    def __repr__(self) -> str:
        return f"PackSequences(length={self.length}, too_long={self.too_long!r}, pad_value={self.pad_value!r})"


def _first_fit_decreasing(sizes: np.ndarray, capacity: int) -> np.ndarray:
    """Return the row of every item under first-fit decreasing (-1 for size 0).

    Items go longest first (ties in index order), each into the lowest row
    with room. A max-tree over the rows' free room finds that row in
    O(log n) steps; rows not yet opened have full room, so the first of them
    is where a new row opens. A run of ``k`` equal sizes ``s`` is placed row
    by row: the first row with room takes ``min(k, room // s)`` of them
    (placing them one by one does the same, since no row gains room), so
    the loop runs once per row touched by a run, not once per item.
    """
    rows = np.full(len(sizes), -1, dtype=np.int64)
    idx = np.flatnonzero(sizes > 0)
    if not idx.size:
        return rows
    order = idx[np.argsort(-sizes[idx], kind="stable")]
    sorted_sizes = sizes[order]
    n = len(order)
    bounds = np.flatnonzero(np.diff(sorted_sizes)) + 1
    run_sizes = sorted_sizes[np.concatenate(([0], bounds))].tolist()
    run_counts = np.diff(np.concatenate(([0], bounds, [n]))).tolist()
    leaves = 1 << max(0, (n - 1).bit_length())  # at most one row per item
    tree = [capacity] * (2 * leaves)  # tree[1] is the root; node v has children 2v and 2v + 1
    placed_rows: list = []
    placed_counts: list = []
    for size, k in zip(run_sizes, run_counts):
        while k:
            node = 1
            while node < leaves:  # descend to the leftmost leaf with room >= size
                node <<= 1
                if tree[node] < size:
                    node += 1
            room = tree[node]
            take = min(k, room // size)
            k -= take
            placed_rows.append(node - leaves)
            placed_counts.append(take)
            tree[node] = room - take * size
            node >>= 1
            while node:  # room only shrinks: stop at the first ancestor whose maximum holds
                left, right = tree[2 * node], tree[2 * node + 1]
                best = left if left > right else right
                if tree[node] == best:
                    break
                tree[node] = best
                node >>= 1
    rows[order] = np.repeat(np.array(placed_rows, dtype=np.int64), placed_counts)
    return rows


def _fill_rows(
    ra: RaggedArray, rows: np.ndarray, placed: np.ndarray, shape: tuple, fill: np.ndarray, with_ids: bool = False
) -> tuple:
    """Copy the first ``placed[i]`` entries of each sample into its row, samples of a row in index order.

    Returns ``(tokens,)`` or, with ``with_ids``, ``(tokens, segment_ids, positions, starts)``.
    """
    num_rows, width = shape
    kept = np.flatnonzero(rows >= 0)
    order = kept[np.argsort(rows[kept], kind="stable")]  # by row, then by index
    lens = placed[order]
    row_of = rows[order]
    offsets = _offsets_of(lens)  # where each sample starts in the concatenation of all rows' contents
    row_fill = np.bincount(row_of, weights=lens, minlength=num_rows).astype(np.int64)
    mask = np.arange(width) < row_fill[:, None]
    tokens = np.full((num_rows, width) + ra.feature_shape, fill, dtype=ra.dtype)
    tokens[mask] = np.take(ra.values, _run_positions(ra.offsets[order], lens, offsets), axis=0)
    if not with_ids:
        return (tokens,)
    first = np.concatenate(([0], np.flatnonzero(np.diff(row_of)) + 1)) if len(order) else np.zeros(0, np.int64)
    per_row = np.diff(np.concatenate((first, [len(order)])))
    rank = np.arange(len(order)) - np.repeat(first, per_row)  # 0-based place of the sample in its row
    row_start = np.repeat(offsets[first], per_row)
    starts = np.full(len(rows), -1, dtype=np.int64)
    starts[order] = offsets[:-1] - row_start
    segment_ids = np.zeros((num_rows, width), dtype=np.int32)
    positions = np.zeros((num_rows, width), dtype=np.int32)
    segment_ids[mask] = np.repeat(rank + 1, lens)
    positions[mask] = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lens)
    return tokens, segment_ids, positions, starts
