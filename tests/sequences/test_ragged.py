"""RaggedArray: gathers equal the list-of-arrays reference, views vs copies, pickling, bad input."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup.sequences import RaggedArray
from tests.sequences.strategies import assert_samples_equal, ragged_of, sample_lists


@given(sample_lists(), st.data())
def test_index_array_gather_equals_list_reference(drawn, data):
    """ra[idx] holds exactly [samples[i] for i in idx], for any order, repeats and negative indices."""
    samples, feat, dtype = drawn
    ra = ragged_of(samples, feat, dtype)
    n = len(samples)
    idx = data.draw(st.lists(st.integers(-n, n - 1), max_size=20)) if n else []
    out = ra[np.array(idx, dtype=np.int64)]
    assert isinstance(out, RaggedArray)
    assert out.dtype == dtype and out.feature_shape == feat
    assert_samples_equal(out, [samples[i] for i in idx])
    assert type(out.values) is np.ndarray
    assert not np.shares_memory(out.values, ra.values)


@given(sample_lists(), st.data())
def test_slices_and_masks_equal_list_reference(drawn, data):
    """Slices (any step) and boolean masks select what they select from a list."""
    samples, feat, dtype = drawn
    ra = ragged_of(samples, feat, dtype)
    n = len(samples)
    start = data.draw(st.none() | st.integers(-n - 2, n + 2))
    stop = data.draw(st.none() | st.integers(-n - 2, n + 2))
    step = data.draw(st.none() | st.sampled_from([1, 2, 3, -1, -2]))
    assert_samples_equal(ra[start:stop:step], samples[start:stop:step])
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    assert_samples_equal(ra[mask], [s for s, m in zip(samples, mask) if m])


@given(sample_lists(min_samples=1))
def test_int_index_is_a_view_of_the_sample(drawn):
    samples, feat, dtype = drawn
    ra = ragged_of(samples, feat, dtype)
    for i in range(-len(samples), len(samples)):
        assert np.array_equal(ra[i], samples[i]) and ra[i].shape == samples[i].shape
        if len(samples[i]):
            assert np.shares_memory(ra[i], ra.values)


def test_contiguous_run_is_one_slice_copy_and_does_not_alias():
    ra = RaggedArray.from_list([np.arange(k) for k in range(1, 8)])
    out = ra[np.array([2, 3, 4])]
    assert_samples_equal(out, [np.arange(3), np.arange(4), np.arange(5)])
    assert not np.shares_memory(out.values, ra.values)


def test_step_one_slice_views_values_with_offsets_of_its_own():
    ra = RaggedArray.from_list([[1, 2], [3], [4, 5, 6]])
    part = ra[1:]
    assert part.offsets.tolist() == [0, 1, 4]
    assert np.shares_memory(part.values, ra.values)


@given(sample_lists(min_samples=1, max_samples=30), st.integers(0, 2**16))
def test_memmap_values_gather_in_file_order_and_give_plain_arrays(tmp_path_factory, drawn, seed):
    samples, feat, dtype = drawn
    ra = ragged_of(samples, feat, dtype)
    path = tmp_path_factory.mktemp("mm") / "values.bin"
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=ra.values.shape)
    mm[...] = ra.values
    on_disk = RaggedArray(mm, ra.offsets)
    idx = np.random.default_rng(seed).integers(0, len(samples), size=2 * len(samples))
    out = on_disk[idx]
    assert type(out.values) is np.ndarray
    assert_samples_equal(out, [samples[i] for i in idx])


@given(sample_lists())
def test_pickle_round_trip_is_exact_and_compact(drawn):
    samples, feat, dtype = drawn
    ra = ragged_of(samples, feat, dtype)
    blob = pickle.dumps(ra, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(blob)
    assert_samples_equal(back, samples)
    assert back.offsets.tolist() == ra.offsets.tolist()
    # two arrays and a little framing: nothing per sample
    assert len(blob) < ra.nbytes + 400


@given(sample_lists())
def test_properties_match_the_samples(drawn):
    samples, feat, dtype = drawn
    ra = ragged_of(samples, feat, dtype)
    lengths = [len(s) for s in samples]
    assert len(ra) == len(samples)
    assert ra.lengths.tolist() == lengths and ra.lengths.dtype == np.int64
    assert ra.offsets.tolist() == np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))).tolist()
    assert ra.values.shape == (sum(lengths),) + feat
    assert ra.feature_shape == feat and ra.dtype == dtype
    assert_samples_equal(list(ra), samples)
    assert_samples_equal(RaggedArray.from_lengths(ra.values, lengths), samples)


def test_to_list_does_not_alias_values():
    ra = RaggedArray.from_list([[1, 2], [3]])
    first = ra.to_list()[0]
    first[0] = 99
    assert ra.values.tolist() == [1, 2, 3]


def test_offsets_are_read_only_and_values_kept_as_given():
    values = np.arange(5)
    offsets = np.array([0, 2, 5])
    ra = RaggedArray(values, offsets)
    assert ra.values is values
    with pytest.raises(ValueError, match="read-only"):
        ra.offsets[1] = 3
    offsets[1] = 1  # the caller's array stays writable
    assert offsets.flags.writeable


def test_empty_samples_are_allowed():
    none = np.zeros(0, np.int64)
    ra = RaggedArray.from_list([none, [1], none])
    assert ra.lengths.tolist() == [0, 1, 0]
    assert ra[0].shape == (0,)
    assert_samples_equal(ra[np.array([2, 1])], [np.zeros(0, np.int64), np.array([1])])


def test_empty_ragged_array():
    ra = RaggedArray.from_list([])
    assert len(ra) == 0 and ra.to_list() == [] and ra.values.dtype == np.float64
    assert len(ra[np.array([], dtype=int)]) == 0 and len(ra[[]]) == 0


def test_from_list_dtype_keyword():
    assert RaggedArray.from_list([[1, 2], [3]], dtype=np.float32).dtype == np.float32


def test_np_asarray_raises_and_points_to_pad_batch():
    ra = RaggedArray.from_list([[1, 2], [3]])
    with pytest.raises(TypeError, match="pad_batch"):
        np.asarray(ra)
    with pytest.raises(TypeError, match="no rectangular array form"):
        np.array(ra, dtype=np.float32)


def test_repr_names_length_and_dtype():
    text = repr(RaggedArray.from_list([np.zeros((k, 2), np.float32) for k in range(8)]))
    assert "8 samples" in text and "float32" in text and "feature_shape=(2,)" in text and "..." in text


def test_core_indexes_it_directly():
    """The sorted-read path of the core would call np.take on the object; a RaggedArray opts out."""
    from batchup.arrays import wants_sorted_reads

    assert wants_sorted_reads(RaggedArray.from_list([[1]])) is False


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, offsets, err, match",
    [
        (np.arange(3), np.array([[0, 3]]), ValueError, r"offsets must be a 1-D integer array, got an array of shape \(1, 2\)"),
        (np.arange(3), np.array([0.0, 3.0]), TypeError, "offsets must be a 1-D integer array, got dtype float64"),
        (np.arange(3), np.array([0, 1, 3], dtype=bool), TypeError, "got dtype bool"),
        (np.arange(3), np.array([], dtype=np.int64), ValueError, "at least one entry"),
        (np.arange(3), [1, 3], ValueError, r"offsets must start at 0, got offsets\[0\] = 1"),
        (np.arange(6), [0, 2, 5, 4, 6], ValueError,
         r"offsets\[3\] = 4 < offsets\[2\] = 5 \(sample 2 would have length -1\)"),
        (np.arange(6), [0, 2, 5], ValueError, r"must equal len\(values\) = 6, got offsets\[-1\] = 5"),
        (np.int64(3), [0], ValueError, "at least 1 dimension"),
        (np.array([None, 1], dtype=object), [0, 2], TypeError, "not Python objects"),
    ],
)
def test_bad_constructor_arguments(values, offsets, err, match):
    with pytest.raises(err, match=match):
        RaggedArray(values, offsets)


@pytest.mark.parametrize(
    "samples, err, match",
    [
        ([[1, 2], 3], ValueError, "sample 1 is a scalar"),
        ([np.zeros((2, 3)), np.zeros((1, 4))], ValueError,
         r"sample 1 has shape \(1, 4\) but sample 0 has shape \(2, 3\)"),
        ([np.array([None], dtype=object)], TypeError, "not Python objects"),
    ],
)
def test_bad_from_list(samples, err, match):
    with pytest.raises(err, match=match):
        RaggedArray.from_list(samples)


@pytest.mark.parametrize(
    "lengths, err, match",
    [
        ([3, -2, 5], ValueError, "sample 1 has length -2"),
        ([1, 1], ValueError, "lengths sum to 2 but values holds 6 entries"),
        ([[6]], ValueError, "lengths must be a 1-D integer array"),
        ([6.0], TypeError, "got dtype float64"),
    ],
)
def test_bad_from_lengths(lengths, err, match):
    with pytest.raises(err, match=match):
        RaggedArray.from_lengths(np.arange(6), lengths)


@pytest.mark.parametrize(
    "key, err, match",
    [
        (3, IndexError, "index 3 is out of range for a RaggedArray of 3 samples"),
        (-4, IndexError, "index -4 is out of range"),
        (np.array([0, 5]), IndexError, "index 5 is out of range"),
        (np.array([[0, 1]]), IndexError, "must be 1-D"),
        (np.array([0.5]), TypeError, "got dtype float64"),
        (np.array([True, False]), IndexError, r"boolean mask must have shape \(3,\)"),
        ((0, 1), TypeError, "takes one index"),
        ("a", TypeError, "indexed by an int"),
    ],
)
def test_bad_indices(key, err, match):
    ra = RaggedArray.from_list([[1, 2], [3], [4, 5, 6]])
    with pytest.raises(err, match=match):
        ra[key]
