"""batchup.image.utils.ImageArrayUInt8ToFloat32 (spec section 7)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from batchup.image.utils import ImageArrayUInt8ToFloat32
from batchup.sources import ArrayDataSource


def test_attributes():
    x = ImageArrayUInt8ToFloat32(np.zeros((4, 1, 2, 2), np.uint8), -1.0, 1.0)
    assert x.dtype == np.float32 and x.dtype is np.float32
    assert x.offset == np.float32(-1.0) and isinstance(x.offset, np.float32)
    assert x.scale == np.float32(2.0 / 255.0)
    assert x.shape == (4, 1, 2, 2) and len(x) == 4 and x.ndim == 4


def test_indexing_kinds():
    u8 = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    x = ImageArrayUInt8ToFloat32(u8)
    for idx in (1, slice(1, 3), np.array([3, 0]), ..., (2, 5), (slice(None), 0)):
        got = x[idx]
        np.testing.assert_allclose(got, u8[idx].astype(np.float32) / 255.0, rtol=1e-6)
        assert np.asarray(got).dtype == np.float32
    assert isinstance(x[2, 3], np.float32)
    with pytest.raises(TypeError):
        x[0] = 1


def test_shape_needs_the_wrapped_shape():
    x = ImageArrayUInt8ToFloat32([[1, 2]])
    assert len(x) == 1
    with pytest.raises(AttributeError):
        x.shape  # noqa: B018


@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)),
       st.floats(-10, 10), st.floats(-10, 10))
def test_maps_0_and_255_to_the_bounds(arr, lower, upper):
    x = ImageArrayUInt8ToFloat32(arr, lower, upper)
    expected = arr.astype(np.float32) * np.float32((upper - lower) / 255.0) + np.float32(lower)
    np.testing.assert_array_equal(x[...], expected)
    ends = ImageArrayUInt8ToFloat32(np.array([0, 255], np.uint8), lower, upper)[:]
    np.testing.assert_allclose(ends, [lower, upper], rtol=1e-5, atol=1e-5)


def test_usable_in_an_array_data_source():
    u8 = np.arange(10, dtype=np.uint8).repeat(4).reshape(10, 2, 2)
    ds = ArrayDataSource([ImageArrayUInt8ToFloat32(u8, 0.0, 255.0), np.arange(10)])
    for X, y in ds.batch_iterator(3, shuffle=1):
        assert X.dtype == np.float32
        np.testing.assert_array_equal(X[:, 0, 0], y.astype(np.float32))
    assert np.asarray(ImageArrayUInt8ToFloat32(u8)).shape == (10, 2, 2)
