"""pad_batch and PadBatch: no token lost or moved, masks match lengths, lengths rounded and capped, bad input."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup.sequences import PadBatch, RaggedArray, pad_batch
from tests.sequences.strategies import ragged_of, sample_lists


def _check_padded(samples, padded, lengths, mask, pad_value, expected_length, cut=None):
    assert padded.shape[:2] == (len(samples), expected_length)
    assert mask.shape == (len(samples), expected_length) and mask.dtype == np.bool_
    assert lengths.dtype == np.int64
    for b, s in enumerate(samples):
        keep = len(s) if cut is None else min(len(s), cut)
        assert lengths[b] == keep
        assert padded[b].shape[1:] == s.shape[1:]
        assert np.array_equal(padded[b, :keep], s[:keep]), f"sample {b} moved or changed"
        assert (padded[b, keep:] == pad_value).all(), f"row {b} padding holds something else"
        assert mask[b].tolist() == [t < keep for t in range(expected_length)]


@given(sample_lists(), st.integers(-5, 5), st.booleans())
def test_padding_keeps_every_token_in_place(drawn, pad_value, as_list):
    """Every sample sits at the start of its row, the rest is pad_value; the mask is t < length."""
    samples, feat, dtype = drawn
    batch = samples if as_list and samples else ragged_of(samples, feat, dtype)
    padded, lengths, mask = pad_batch(batch, pad_value, return_mask=True)
    longest = max([len(s) for s in samples], default=0)
    assert padded.dtype == dtype and padded.shape[2:] == feat
    _check_padded(samples, padded, lengths, mask, pad_value, longest)


@given(sample_lists(), st.integers(1, 6))
def test_pad_to_multiple_of_rounds_up_to_at_least_one_multiple(drawn, multiple):
    samples, feat, dtype = drawn
    padded, lengths, mask = pad_batch(ragged_of(samples, feat, dtype), 0, multiple, return_mask=True)
    longest = max([len(s) for s in samples], default=0)
    L = padded.shape[1]
    assert L % multiple == 0 and L >= max(longest, 1) and L < max(longest, 1) + multiple
    _check_padded(samples, padded, lengths, mask, 0, L)


@given(sample_lists(min_samples=1), st.integers(1, 9), st.sampled_from([None, 1]))
def test_max_length_with_truncate_keeps_the_first_entries(drawn, cap, multiple):
    samples, feat, dtype = drawn
    padded, lengths, mask = pad_batch(ragged_of(samples, feat, dtype), 7, multiple, cap, return_mask=True, truncate=True)
    longest = max(len(s) for s in samples)
    expected = min(max(longest, 1 if multiple else 0), cap)
    _check_padded(samples, padded, lengths, mask, 7, expected, cut=cap)


def test_fixed_shape_with_multiple_equal_to_max_length():
    padded, lengths = pad_batch([[1], [2, 3]], pad_to_multiple_of=8, max_length=8)
    assert padded.shape == (2, 8) and lengths.tolist() == [1, 2]


def test_result_is_new_memory():
    ra = RaggedArray.from_list([[1, 2], [3]])
    padded, _ = pad_batch(ra)
    assert not np.shares_memory(padded, ra.values)


def test_nd_samples_and_per_feature_pad_value():
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    b = np.arange(2, dtype=np.float32).reshape(1, 2)
    padded, lengths = pad_batch([a, b], pad_value=[-1.0, -2.0])
    assert padded.shape == (2, 3, 2)
    assert padded[1, 1:].tolist() == [[-1.0, -2.0], [-1.0, -2.0]]
    assert np.array_equal(padded[0], a) and lengths.tolist() == [3, 1]


def test_nan_pad_value_for_floats():
    padded, _ = pad_batch([np.array([1.0]), np.array([1.0, 2.0])], pad_value=np.nan)
    assert np.isnan(padded[0, 1])


def test_empty_batch_and_empty_samples():
    padded, lengths, mask = pad_batch(RaggedArray(np.zeros((0, 3)), [0]), return_mask=True)
    assert padded.shape == (0, 0, 3) and lengths.shape == (0,) and mask.shape == (0, 0)
    none = np.zeros(0, np.int64)
    padded, lengths = pad_batch([none, none], pad_to_multiple_of=4)
    assert padded.shape == (2, 4) and lengths.tolist() == [0, 0]


# -- PadBatch: the map-function form ------------------------------------------------------------


def test_pad_batch_callable_splices_outputs_in_place():
    x = RaggedArray.from_list([[1, 2, 3], [4]])
    y = np.array([7, 8])
    padded, lengths, mask, yy = PadBatch(return_mask=True)(x, y)
    assert padded.tolist() == [[1, 2, 3], [4, 0, 0]] and lengths.tolist() == [3, 1]
    assert mask.tolist() == [[True, True, True], [True, False, False]] and yy is y
    idx, padded2, lengths2 = PadBatch(position=-1)(np.array([0, 1]), x)
    assert padded2.tolist() == [[1, 2, 3], [4, 0, 0]]


def test_pad_batch_callable_pickles():
    fn = pickle.loads(pickle.dumps(PadBatch(-1, 4, 8, position=1, truncate=True)))
    assert (fn.pad_value, fn.pad_to_multiple_of, fn.max_length, fn.position, fn.truncate) == (-1, 4, 8, 1, True)
    assert "PadBatch(pad_value=-1" in repr(fn)


# -- bad input -----------------------------------------------------------------------------------


def test_too_long_sample_names_sample_and_length():
    with pytest.raises(ValueError, match=r"sample 2 has length 5, more than max_length=4; pass truncate=True"):
        pad_batch([[1], [1, 2], [1, 2, 3, 4, 5]], max_length=4)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"pad_to_multiple_of": 0}, ValueError, "pad_to_multiple_of must be a positive int, got 0"),
        ({"max_length": -3}, ValueError, "max_length must be a positive int, got -3"),
        ({"max_length": 2.0}, TypeError, "max_length must be an int"),
        ({"pad_to_multiple_of": True}, TypeError, "pad_to_multiple_of must be an int"),
        ({"pad_to_multiple_of": 4, "max_length": 6}, ValueError,
         "max_length must be a multiple of pad_to_multiple_of: got max_length=6, pad_to_multiple_of=4"),
        ({"pad_value": 0.5}, ValueError, r"pad_value 0.5 does not fit the samples' dtype int64"),
        ({"pad_value": -1, "batch": RaggedArray(np.zeros(2, np.uint8), [0, 2])}, ValueError,
         "pad_value -1 does not fit the samples' dtype uint8"),
        ({"pad_value": [1, 2, 3]}, ValueError, r"pad_value of shape \(3,\) does not broadcast"),
        ({"pad_value": None}, TypeError, "pad_value must be a number"),
        ({"batch": 5}, TypeError, "batch must be a RaggedArray or a list of arrays"),
        ({"batch": [1, 2]}, ValueError, "sample 0 is a scalar"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    kwargs = dict(kwargs)
    batch = kwargs.pop("batch", [[1, 2], [3]])
    with pytest.raises(err, match=match):
        pad_batch(batch, **kwargs)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"position": 1.0}, TypeError, "position must be an int"),
        ({"max_length": 0}, ValueError, "max_length must be a positive int"),
    ],
)
def test_bad_pad_batch_callable(kwargs, err, match):
    with pytest.raises(err, match=match):
        PadBatch(**kwargs)


def test_pad_batch_callable_position_out_of_range():
    with pytest.raises(IndexError, match=r"PadBatch\(position=2\) got a batch of 2 elements"):
        PadBatch(position=2)(RaggedArray.from_list([[1]]), np.array([0]))
