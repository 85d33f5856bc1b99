"""Variable-length samples: ragged arrays, length bucketing, padding and packing.

:class:`RaggedArray` stores samples of different lengths as one flat array
plus offsets and works wherever an array works in a source;
:class:`BucketSampler` batches samples of similar length (a fixed count or
a token budget per batch); :func:`pad_batch` and :func:`pack_sequences`
turn a ragged batch into rectangular arrays (one sample per row with a
mask, or several samples per row with segment ids and positions).
:class:`PadBatch`, :class:`PadToBucket` and :class:`PackSequences` are
picklable map functions.
"""
from __future__ import annotations

from batchup.sequences.bucket import BucketSampler, PadToBucket
from batchup.sequences.packing import PackedBatch, PackSequences, pack_sequences
from batchup.sequences.padding import PadBatch, pad_batch
from batchup.sequences.ragged import RaggedArray

__all__ = [
    "BucketSampler",
    "PackSequences",
    "PackedBatch",
    "PadBatch",
    "PadToBucket",
    "RaggedArray",
    "pack_sequences",
    "pad_batch",
]
