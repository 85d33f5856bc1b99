"""Hypothesis strategies for ragged batches: a list of sample arrays (the reference) and its RaggedArray."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from batchup.sequences import RaggedArray

FEATURE_SHAPES = [(), (2,), (2, 3)]
DTYPES = [np.int16, np.int64, np.float32]


@st.composite
def sample_lists(draw, min_length=0, max_length=9, min_samples=0, max_samples=14, feature_shapes=None):
    """Return ``(samples, feature_shape, dtype)``: a list of arrays of random lengths."""
    feat = draw(st.sampled_from(feature_shapes or FEATURE_SHAPES))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    lengths = draw(st.lists(st.integers(min_length, max_length), min_size=min_samples, max_size=max_samples))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    samples = [rng.integers(1, 1000, size=(n,) + feat).astype(dtype) for n in lengths]
    return samples, feat, dtype


def ragged_of(samples, feat, dtype):
    """The RaggedArray of a sample list (works for an empty list too)."""
    if not samples:
        return RaggedArray(np.zeros((0,) + feat, dtype), [0])
    return RaggedArray.from_list(samples)


def assert_samples_equal(got, expected):
    """Assert a RaggedArray (or list of arrays) holds exactly ``expected``, dtypes and shapes included."""
    got = got.to_list() if isinstance(got, RaggedArray) else list(got)
    assert len(got) == len(expected), f"{len(got)} samples != {len(expected)} samples"
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"sample {i}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert np.array_equal(a, b), f"sample {i} differs: {a!r} != {b!r}"
