"""pack_sequences, PackedBatch and PackSequences: lossless, first-fit decreasing, deterministic, bad input."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup.sequences import PackedBatch, PackSequences, RaggedArray, pack_sequences
from batchup.sequences.packing import _first_fit_decreasing
from tests.sequences.strategies import assert_samples_equal, ragged_of, sample_lists


def reference_ffd(lengths, capacity):
    """First-fit decreasing, one sample at a time (longest first, ties in index order)."""
    rows = [-1] * len(lengths)
    remaining: list = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        if lengths[i] == 0:
            continue
        for r, room in enumerate(remaining):
            if room >= lengths[i]:
                rows[i] = r
                remaining[r] -= lengths[i]
                break
        else:
            rows[i] = len(remaining)
            remaining.append(capacity - lengths[i])
    return rows


def segments_of(p: PackedBatch) -> dict:
    """Read every segment back from segment ids and positions alone: {(row, start): entries}."""
    out = {}
    for r in range(p.tokens.shape[0]):
        seg = p.segment_ids[r]
        for k in range(1, int(seg.max(initial=0)) + 1):
            cols = np.flatnonzero(seg == k)
            assert cols.size, f"row {r} skips segment id {k}"
            assert (np.diff(cols) == 1).all(), f"segment {k} of row {r} is not contiguous"
            assert p.positions[r, cols].tolist() == list(range(cols.size)), f"positions of segment {k}, row {r}"
            out[(r, int(cols[0]))] = p.tokens[r, cols]
    return out


def check_lossless(p: PackedBatch, expected: list, width: int) -> None:
    """Each expected sample is one segment, found at (rows[i], starts[i]); nothing else is in the rows."""
    segs = segments_of(p)
    kept = [i for i, e in enumerate(expected) if e is not None]
    assert len(segs) == len(kept), f"{len(segs)} segments for {len(kept)} samples"
    for i in kept:
        key = (int(p.rows[i]), int(p.starts[i]))
        assert key in segs, f"sample {i} is not at row {key[0]}, column {key[1]}"
        got = segs[key]
        assert got.dtype == expected[i].dtype and np.array_equal(got, expected[i]), f"sample {i} differs"
    assert int((p.segment_ids > 0).sum()) == sum(len(expected[i]) for i in kept)
    assert p.tokens.shape[1] == width and p.segment_ids.shape == p.positions.shape == p.tokens.shape[:2]
    assert p.segment_ids.dtype == np.int32 and p.positions.dtype == np.int32
    assert ((p.segment_ids == 0) <= (p.positions == 0)).all(), "positions in padding are not 0"
    assert (p.segment_ids[:, 0] > 0).all(), "a row is empty or starts with padding"


@st.composite
def packable(draw, **kw):
    samples, feat, dtype = draw(sample_lists(min_length=1, **kw))
    longest = max([len(s) for s in samples], default=1)
    width = draw(st.integers(longest, longest + 12))
    return samples, feat, dtype, width


@given(packable(max_samples=40))
def test_packing_loses_and_reorders_no_token(drawn):
    """Unpacking with segment ids and positions gives back each sample exactly."""
    samples, feat, dtype, width = drawn
    p = pack_sequences(ragged_of(samples, feat, dtype), width)
    check_lossless(p, samples, width)
    assert p.tokens.dtype == dtype and p.tokens.shape[2:] == feat
    assert (p.tokens[p.segment_ids == 0] == 0).all()
    assert_samples_equal(p.unpack(), samples)
    assert p.lengths.tolist() == p.input_lengths.tolist() == [len(s) for s in samples]


@given(st.lists(st.integers(0, 30), max_size=60) | st.lists(st.sampled_from([1, 2, 3, 7, 16, 30]), max_size=300),
       st.integers(30, 64))
def test_rows_are_exactly_first_fit_decreasing(lengths, width):
    lengths = np.array(lengths, dtype=np.int64)
    assert _first_fit_decreasing(lengths, width).tolist() == reference_ffd(lengths.tolist(), width)


@given(packable(max_samples=40, max_length=20))
def test_ffd_never_opens_a_row_while_an_earlier_one_has_room(drawn):
    """Replayed longest first, each sample went to the first row that had room for it."""
    samples, feat, dtype, width = drawn
    p = pack_sequences(ragged_of(samples, feat, dtype), width)
    lengths = [len(s) for s in samples]
    fill = [0] * p.tokens.shape[0]
    for i in sorted(range(len(samples)), key=lambda i: (-lengths[i], i)):
        r = int(p.rows[i])
        first_fit = next(j for j in range(len(fill) + 1) if j == len(fill) or fill[j] + lengths[i] <= width)
        assert r == first_fit, f"sample {i} (length {lengths[i]}) went to row {r}, first fit was row {first_fit}"
        fill[r] += lengths[i]
    assert all(0 < f <= width for f in fill), "a row is empty or longer than length"


@given(packable(max_samples=30))
def test_samples_keep_batch_order_inside_a_row(drawn):
    samples, feat, dtype, width = drawn
    p = pack_sequences(ragged_of(samples, feat, dtype), width)
    for r in range(p.tokens.shape[0]):
        members = np.flatnonzero(p.rows == r)
        assert p.starts[members].tolist() == sorted(p.starts[members].tolist())
        assert p.starts[members[0]] == 0
        assert [int(p.segment_ids[r, p.starts[i]]) for i in members] == list(range(1, len(members) + 1))


@given(sample_lists(min_length=1, min_samples=1, max_samples=30), st.integers(1, 9), st.sampled_from(["truncate", "drop"]))
def test_too_long_samples_truncated_or_dropped_when_asked(drawn, width, mode):
    samples, feat, dtype = drawn
    p = pack_sequences(ragged_of(samples, feat, dtype), width, too_long=mode)
    if mode == "truncate":
        expected = [s[:width] for s in samples]
    else:
        expected = [s if len(s) <= width else None for s in samples]
    check_lossless(p, expected, width)
    dropped = [i for i, e in enumerate(expected) if e is None]
    assert p.rows[dropped].tolist() == [-1] * len(dropped) and p.starts[dropped].tolist() == [-1] * len(dropped)
    assert p.lengths.tolist() == [0 if e is None else len(e) for e in expected]
    back = p.unpack().to_list()
    for i, e in enumerate(expected):
        assert np.array_equal(back[i], e if e is not None else samples[i][:0])


@given(packable(max_samples=20), st.integers(-3, 3))
def test_companion_arrays_follow_the_same_layout(drawn, shift):
    """PackedBatch.pack puts a second array of the same lengths where the first one's entries went."""
    samples, feat, dtype, width = drawn
    p = pack_sequences(samples or ragged_of(samples, feat, dtype), width)
    companion = [np.full(len(s), k + shift, dtype=np.int64) for k, s in enumerate(samples)]
    packed = p.pack(companion or RaggedArray(np.zeros(0, np.int64), [0]), pad_value=-9)
    assert packed.shape == p.tokens.shape[:2]
    expected = np.where(p.segment_ids > 0, 0, -9)
    for i in range(len(samples)):
        expected[p.rows[i], p.starts[i] : p.starts[i] + len(samples[i])] = i + shift
    assert packed.tolist() == expected.tolist()


def test_golden_output_is_deterministic():
    batch = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10], [11, 12]]
    p = pack_sequences(batch, 6)
    assert p.tokens.tolist() == [[4, 5, 7, 8, 9, 10], [1, 2, 3, 6, 11, 12]]
    assert p.segment_ids.tolist() == [[1, 1, 2, 2, 2, 2], [1, 1, 1, 2, 3, 3]]
    assert p.positions.tolist() == [[0, 1, 0, 1, 2, 3], [0, 1, 2, 0, 0, 1]]
    assert p.rows.tolist() == [1, 0, 1, 0, 1] and p.starts.tolist() == [0, 0, 3, 2, 4]
    again = pack_sequences(RaggedArray.from_list(batch), 6)
    assert again.tokens.tolist() == p.tokens.tolist() and again.rows.tolist() == p.rows.tolist()


def test_nd_samples_and_pad_value():
    a = np.ones((3, 2), np.float32)
    b = np.full((2, 2), 2.0, np.float32)
    p = pack_sequences([a, b], 6, pad_value=-1.0)
    assert p.tokens.shape == (1, 6, 2) and p.tokens[0, 5].tolist() == [-1.0, -1.0]
    assert p.mask.tolist() == [[True] * 5 + [False]]


def test_empty_batch_packs_into_no_rows():
    p = pack_sequences(RaggedArray(np.zeros((0, 2)), [0]), 4)
    assert p.tokens.shape == (0, 4, 2) and p.segment_ids.shape == (0, 4) and p.rows.shape == (0,)


# -- PackSequences: the map-function form ---------------------------------------------------------


def test_pack_sequences_callable_packs_every_element_alike():
    x = RaggedArray.from_list([[1, 2, 3], [4, 5], [6]])
    y = RaggedArray.from_list([[10, 20, 30], [40, 50], [60]])
    px, py, seg, pos = PackSequences(4)(x, y)
    assert px.tolist() == [[1, 2, 3, 6], [4, 5, 0, 0]]
    assert py.tolist() == [[10, 20, 30, 60], [40, 50, 0, 0]]
    assert seg.tolist() == [[1, 1, 1, 2], [1, 1, 0, 0]] and pos.tolist() == [[0, 1, 2, 0], [0, 1, 0, 0]]


def test_pack_sequences_callable_pickles():
    fn = pickle.loads(pickle.dumps(PackSequences(8, too_long="drop", pad_value=-1)))
    assert (fn.length, fn.too_long, fn.pad_value) == (8, "drop", -1)
    assert "PackSequences(length=8" in repr(fn)


# -- bad input -------------------------------------------------------------------------------------


def test_sample_longer_than_length_names_sample_and_length():
    with pytest.raises(ValueError, match=r"sample 1 has length 7, longer than length=5; pass too_long='truncate'"):
        pack_sequences([[1], list(range(7))], 5)


def test_empty_sample_is_rejected_with_its_index():
    with pytest.raises(ValueError, match="sample 2 has length 0: a packed row cannot hold an empty segment"):
        pack_sequences([np.array([1]), np.array([2]), np.zeros(0, np.int64)], 5)


@pytest.mark.parametrize(
    "length, kwargs, err, match",
    [
        (0, {}, ValueError, "length must be a positive int, got 0"),
        (4.0, {}, TypeError, "length must be an int"),
        (4, {"too_long": "cut"}, ValueError, r"too_long must be one of \['error', 'truncate', 'drop'\], got 'cut'"),
        (4, {"pad_value": 0.5}, ValueError, "pad_value 0.5 does not fit"),
    ],
)
def test_bad_arguments(length, kwargs, err, match):
    with pytest.raises(err, match=match):
        pack_sequences([[1, 2]], length, **kwargs)
    if "pad_value" not in kwargs:
        with pytest.raises(err, match=match):
            PackSequences(length, **kwargs)


def test_companion_with_other_lengths_names_the_sample():
    p = pack_sequences([[1, 2], [3]], 4)
    with pytest.raises(ValueError, match="sample 1 of other has length 2 but the packed sample 1 has length 1"):
        p.pack([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="other has 1 samples but 2 samples were packed"):
        p.pack([[1, 2]])


def test_unpack_checks_the_shape():
    p = pack_sequences([[1, 2], [3]], 4)
    with pytest.raises(ValueError, match=r"packed must have shape \(1, 4\) in its first two axes, got \(2, 4\)"):
        p.unpack(np.zeros((2, 4)))


def test_callable_rejects_per_sample_arrays_and_empty_batches():
    x = RaggedArray.from_list([[1, 2], [3]])
    with pytest.raises(TypeError, match="batch element 1 is a ndarray, not a ragged batch"):
        PackSequences(4)(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="empty batch"):
        PackSequences(4)()
    with pytest.raises(ValueError, match="sample 1 of batch element 1 has length 2 but the packed sample 1 has length 1"):
        PackSequences(4)(x, RaggedArray.from_list([[1, 2], [3, 4]]))
