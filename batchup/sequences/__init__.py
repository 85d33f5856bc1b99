"""Variable-length samples: ragged arrays, padding and packing.

:class:`RaggedArray` stores samples of different lengths as one flat array
plus offsets and works wherever an array works in a source;
:func:`pad_batch` and :func:`pack_sequences` turn a ragged batch into
rectangular arrays (one sample per row with a mask, or several samples per
row with segment ids and positions). :class:`PadBatch` and
:class:`PackSequences` are the same as picklable map functions.
"""
from __future__ import annotations

from batchup.sequences.packing import PackedBatch, PackSequences, pack_sequences
from batchup.sequences.padding import PadBatch, pad_batch
from batchup.sequences.ragged import RaggedArray

__all__ = [
    "PackSequences",
    "PackedBatch",
    "PadBatch",
    "RaggedArray",
    "pack_sequences",
    "pad_batch",
]
