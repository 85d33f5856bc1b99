"""BalancedSampler (n classes x m samples per batch), its epochs and resume; one-hot labels."""
from __future__ import annotations

import itertools
import json
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from batchup._rng import SeedKey
from batchup.samplers import BalancedSampler, OneHotLabels, to_categorical
from batchup.sources import ArrayDataSource
from tests.helpers import assert_batches_equal, assert_resumes, stream

seeds = st.integers(0, 2**32 - 1)


@st.composite
def setups(draw, max_size=60):
    """Labels over k classes (every class present), with a valid n and m."""
    k = draw(st.integers(1, 8))
    extra = draw(hnp.arrays(np.int64, st.integers(0, max_size - k), elements=st.integers(0, k - 1)))
    labels = np.concatenate([np.arange(k), extra])
    labels = labels[draw(st.permutations(range(len(labels))))]
    labels = labels * 3 - 2  # arbitrary class values, negatives included
    n = draw(st.integers(1, k))
    m = draw(st.integers(1, 5))
    return labels, n, m


def expected_batches(labels, n, m):
    _, counts = np.unique(labels, return_counts=True)
    groups = -(-counts // m)
    return max(-(-int(groups.sum()) // n), int(groups.max()))


def check_batch(labels, b, n, m):
    assert b.dtype == np.int64 and b.shape == (n * m,)
    assert ((b >= 0) & (b < len(labels))).all()
    blocks = labels[b].reshape(n, m)
    assert (blocks == blocks[:, :1]).all(), "each block of m holds one class"
    assert len(set(blocks[:, 0].tolist())) == n, "the n blocks hold distinct classes"
    counts = dict(zip(*np.unique(labels, return_counts=True)))
    for row in b.reshape(n, m):
        if counts[labels[row[0]]] >= m:
            assert len(set(row.tolist())) == m, "replacement only for classes with < m samples"
        else:
            assert set(row.tolist()) == set(np.flatnonzero(labels == labels[row[0]]).tolist())


@given(setups(), seeds, st.integers(1, 3))
def test_every_batch_is_n_classes_by_m_samples(setup, seed, repeats):
    """Every batch: n distinct classes x m samples, only indices of the data, duplicates only if needed."""
    labels, n, m = setup
    s = BalancedSampler(labels, n, m, repeats=repeats)
    batches = list(s.shuffled_indices_batch_iterator(n * m, seed))
    for b in batches:
        check_batch(labels, b, n, m)


@given(setups(), seeds, st.integers(1, 3))
def test_each_epoch_covers_every_sample(setup, seed, repeats):
    """Epoch definition: batches_per_epoch batches, in which every sample appears at least once."""
    labels, n, m = setup
    s = BalancedSampler(labels, n, m, repeats=repeats, seed=seed)
    B = s.batches_per_epoch
    assert B == expected_batches(labels, n, m)
    it = s.in_order_indices_batch_iterator(n * m)
    assert len(it) == B * repeats
    batches = list(it)
    assert len(batches) == B * repeats
    assert s.num_indices_generated() == sum(len(b) for b in batches)
    for e in range(repeats):
        seen = np.concatenate(batches[e * B:(e + 1) * B])
        assert set(seen.tolist()) == set(range(len(labels)))


def test_epoch_is_as_short_as_possible():
    """No covering epoch can be shorter: the biggest class needs k_c batches, all groups need sum/n."""
    big = BalancedSampler(np.array([0] * 9 + [1, 2]), 2, 3)
    assert big.batches_per_epoch == 3  # class 0 needs 3 groups, each in its own batch
    spread = BalancedSampler(np.repeat(np.arange(6), 4), 2, 2)
    assert spread.batches_per_epoch == 6  # 12 groups / 2 per batch


@given(setups(), seeds)
def test_same_seed_same_stream_and_epochs_from_seed(setup, seed):
    """An int seed fixes the stream; epoch e is sampler.epoch_plan(generator(seed, e))."""
    labels, n, m = setup
    s = BalancedSampler(labels, n, m, repeats=2)
    a = stream(s.shuffled_indices_batch_iterator(n * m, seed))
    b = stream(BalancedSampler(labels, n, m, repeats=2, seed=seed).in_order_indices_batch_iterator(n * m))
    assert_batches_equal(a, b)
    B = s.batches_per_epoch
    for e in range(2):
        plan = s.epoch_plan(SeedKey(seed).generator(e))
        assert np.array_equal(np.stack(a[e * B:(e + 1) * B]), plan)


def test_different_seeds_differ_and_global_rng_untouched():
    labels = np.repeat(np.arange(10), 7)
    s = BalancedSampler(labels, 4, 3, seed=1)
    before = np.random.get_state()[1].copy()
    a = np.concatenate(stream(s.in_order_indices_batch_iterator(12)))
    b = np.concatenate(stream(s.shuffled_indices_batch_iterator(12, 2)))
    assert not np.array_equal(a, b)
    assert np.array_equal(np.random.get_state()[1], before)


@given(setups(max_size=30), seeds, st.integers(1, 2))
def test_resume_at_every_step_equals_tail(setup, seed, repeats):
    """P10: restoring the state taken after k batches reproduces the uninterrupted tail."""
    labels, n, m = setup
    s = BalancedSampler(labels, n, m, repeats=repeats)
    assert_resumes(lambda: s.shuffled_indices_batch_iterator(n * m, seed))


@pytest.mark.parametrize("make_rng", [np.random.RandomState, np.random.default_rng])
def test_resume_drawing_from_rng_objects(make_rng):
    labels = np.array([0] * 7 + [1] * 3 + [2] * 5 + [3])
    s = BalancedSampler(labels, 3, 2, repeats=3)
    ref = assert_resumes(lambda: s.shuffled_indices_batch_iterator(6, make_rng(4)))
    assert len(ref) == 3 * s.batches_per_epoch
    for b in ref:
        check_batch(labels, b, 3, 2)


def test_resume_endless_and_sampler_seed():
    labels = np.array([0] * 7 + [1] * 3 + [2] * 5 + [3])
    s = BalancedSampler(labels, 2, 3, repeats=-1, seed=11)
    assert s.num_indices_generated() == np.inf
    assert_resumes(lambda: s.in_order_indices_batch_iterator(6), limit=3 * s.batches_per_epoch + 1)


def test_unseeded_sampler_draws_one_seed_that_every_copy_shares():
    """seed=None: the seed is drawn once where the sampler is built, so iterators and pickled copies agree."""
    labels = np.repeat(np.arange(8), 5)
    s = BalancedSampler(labels, 4, 2, repeats=2)
    a, b = s.in_order_indices_batch_iterator(8), s.in_order_indices_batch_iterator(8)
    assert a.state_dict()["plan"]["seed"] == b.state_dict()["plan"]["seed"]
    copy = pickle.loads(pickle.dumps(s))
    assert_batches_equal(stream(copy.in_order_indices_batch_iterator(8)), stream(b))
    assert BalancedSampler(labels, 4, 2).seed != BalancedSampler(labels, 4, 2).seed


def test_unseeded_run_resumes_into_a_freshly_built_sampler():
    """A checkpoint carries the drawn seed; a new unseeded sampler (another seed) adopts it on restore."""
    labels = np.repeat(np.arange(8), 5)
    a = BalancedSampler(labels, 4, 2, repeats=2).in_order_indices_batch_iterator(8)
    states, batches = [], []
    for _ in range(7):
        states.append(json.loads(json.dumps(a.state_dict())))
        batches.append(next(a))
    rest = stream(a)
    for k, state in enumerate(states):
        fresh = BalancedSampler(labels, 4, 2, repeats=2).in_order_indices_batch_iterator(8)
        fresh.load_state_dict(state)
        assert_batches_equal(stream(fresh), batches[k:] + rest)
    with pytest.raises(ValueError, match="seed"):
        BalancedSampler(labels, 4, 2, repeats=2, seed=5).in_order_indices_batch_iterator(8).load_state_dict(states[2])


def test_state_is_small_json_and_restore_recomputes_one_epoch():
    labels = np.repeat(np.arange(50), 20)
    s = BalancedSampler(labels, 10, 4, repeats=-1, seed=3)
    it = s.in_order_indices_batch_iterator(40)
    for _ in itertools.islice(it, 1000):
        pass
    state = it.state_dict()
    assert len(json.dumps(state)) < 600
    fresh = s.in_order_indices_batch_iterator(40)
    fresh.load_state_dict(state)
    assert np.array_equal(next(fresh), next(it))


def test_state_from_other_pipeline_rejected():
    labels = np.repeat(np.arange(5), 4)
    it = BalancedSampler(labels, 2, 2, seed=0).in_order_indices_batch_iterator(4)
    next(it)
    state = it.state_dict()
    other_labels = labels.copy()
    other_labels[:2] = other_labels[:2][::-1] + 1
    with pytest.raises(ValueError, match="labels_crc"):
        BalancedSampler(other_labels, 2, 2, seed=0).in_order_indices_batch_iterator(4).load_state_dict(state)
    with pytest.raises(ValueError, match="classes_per_batch"):
        BalancedSampler(labels, 1, 4, seed=0).in_order_indices_batch_iterator(4).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        BalancedSampler(labels, 2, 2, seed=1).in_order_indices_batch_iterator(4).load_state_dict(state)
    with pytest.raises(ValueError, match="missing"):
        BalancedSampler(labels, 2, 2, seed=0).in_order_indices_batch_iterator(4).load_state_dict({"kind": "index"})


def test_golden_stream():
    """A silent change to the balanced plan fails here (NumPy's PCG64 and Generator.random are stable)."""
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    s = BalancedSampler(labels, 2, 2, repeats=2, seed=2024)
    got = [b.tolist() for b in s.in_order_indices_batch_iterator(4)]
    assert got == GOLDEN


GOLDEN = [[3, 4, 9, 9], [1, 2, 5, 7], [6, 8, 0, 2], [5, 7, 1, 2], [9, 9, 0, 2], [6, 8, 4, 3]]


# -- with a data source ----------------------------------------------------------------------------------------


def test_array_data_source_alignment_and_sampler_seed():
    """As the sampler of an ArrayDataSource: X and y stay aligned; no shuffle uses the sampler's seed."""
    labels = np.repeat(np.arange(6), [5, 1, 3, 8, 2, 4])
    X = np.arange(len(labels)) * 10
    s = BalancedSampler(labels, 3, 2, seed=5)
    ds = ArrayDataSource([X, labels], sampler=s, include_indices=True)
    assert ds.num_samples() == s.batches_per_epoch * 6
    batches = stream(ds.batch_iterator(6))
    ref = stream(s.in_order_indices_batch_iterator(6))
    assert len(batches) == len(ref) == s.batches_per_epoch
    for (ix, bX, by), r in zip(batches, ref):
        assert np.array_equal(ix, r)
        assert np.array_equal(bX, ix * 10) and np.array_equal(by, labels[ix])
        check_batch(labels, ix, 3, 2)


@pytest.mark.parametrize("shuffle", [7, np.random.RandomState(7), np.random.default_rng(7)])
def test_array_data_source_shuffle_argument_and_resume(shuffle):
    labels = np.repeat(np.arange(5), [6, 2, 3, 9, 4])
    X = np.arange(len(labels), dtype=np.float32)[:, None] * np.ones(3, np.float32)

    def make():
        rng = shuffle
        if not isinstance(shuffle, int):  # a fresh RNG object per pipeline
            rng = type(shuffle)(7) if isinstance(shuffle, np.random.RandomState) else np.random.default_rng(7)
        ds = ArrayDataSource([X, labels], sampler=BalancedSampler(labels, 2, 3, repeats=2))
        return ds.batch_iterator(6, shuffle=rng)

    ref = assert_resumes(make)
    for bX, by in ref:
        assert np.array_equal(bX[:, 0].astype(np.int64), np.arange(len(labels))[bX[:, 0].astype(np.int64)])
        blocks = by.reshape(2, 3)
        assert (blocks == blocks[:, :1]).all() and blocks[0, 0] != blocks[1, 0]


def test_batch_map_mean_needs_no_batch_count():
    labels = np.repeat(np.arange(4), 3)
    ds = ArrayDataSource([labels.astype(float)], sampler=BalancedSampler(labels, 2, 3, seed=0))
    (mean,) = ds.batch_map_mean(lambda x: (x.sum(),), 6)
    assert mean == pytest.approx(1.5)


def test_wrong_batch_size_names_the_product():
    s = BalancedSampler(np.repeat(np.arange(4), 3), 2, 3)
    with pytest.raises(ValueError, match=r"batch_size must be classes_per_batch \* samples_per_class = 2 \* 3 = 6 \(or None\), got 5"):
        s.shuffled_indices_batch_iterator(5, 0)
    ds = ArrayDataSource([np.zeros(12)], sampler=s)
    with pytest.raises(ValueError, match="batch_size"):
        ds.batch_iterator(4)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        s.in_order_indices_batch_iterator(0)


# -- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels,exc,match", [
    (np.zeros((4, 2), np.int64), ValueError, r"1-D integer class labels.*\(4, 2\).*argmax"),
    (np.zeros((2, 2, 2), np.int64), ValueError, r"1-D integer class labels.*\(2, 2, 2\)"),
    (np.array([0.0, 1.0]), TypeError, "1-D integer class labels, got dtype float64"),
    (np.array([True, False]), TypeError, "dtype bool"),
    (np.array(["a", "b"]), TypeError, "labels must be 1-D integer"),
    (np.zeros(0, np.int64), ValueError, "labels must not be empty"),
    (np.int64(3), ValueError, r"shape \(\)"),
])
def test_bad_labels(labels, exc, match):
    with pytest.raises(exc, match=match):
        BalancedSampler(labels, 1, 1)


@pytest.mark.parametrize("n,m,exc,match", [
    (4, 2, ValueError, r"classes_per_batch=4 exceeds the number of classes in labels \(3\)"),
    (0, 2, ValueError, "classes_per_batch must be a positive int, got 0"),
    (-1, 2, ValueError, "classes_per_batch must be a positive int, got -1"),
    (2, 0, ValueError, "samples_per_class must be a positive int, got 0"),
    (2, -3, ValueError, "samples_per_class must be a positive int, got -3"),
    (2.0, 2, TypeError, "classes_per_batch must be an int"),
    (2, True, TypeError, "samples_per_class must be an int"),
])
def test_bad_counts(n, m, exc, match):
    with pytest.raises(exc, match=match):
        BalancedSampler(np.array([0, 1, 2, 2]), n, m)


def test_bad_seed_and_repeats():
    y = np.array([0, 1])
    with pytest.raises(TypeError, match="seed must be None or an int, got '1'"):
        BalancedSampler(y, 1, 1, seed="1")
    with pytest.raises(ValueError, match="seed must be an int in"):
        BalancedSampler(y, 1, 1, seed=-1)
    with pytest.raises(ValueError, match="repeats must be >= 1 or -1"):
        BalancedSampler(y, 1, 1, repeats=0)
    with pytest.raises(TypeError, match="shuffle must be"):
        BalancedSampler(y, 1, 1).shuffled_indices_batch_iterator(1, "yes")


def test_numpy_ints_accepted():
    s = BalancedSampler(np.array([0, 1, 1], np.uint8), np.int64(2), np.int32(1), seed=np.int64(3))
    assert s.batch_size == 2 and s.classes.tolist() == [0, 1]


# -- one-hot labels --------------------------------------------------------------------------------------------


def test_to_categorical():
    assert to_categorical(np.array([1, 0, 2]), 3).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert to_categorical([1, 0], 2).dtype == np.float32
    assert to_categorical(np.array([[1], [0]]), 2, dtype=np.int8).shape == (2, 1, 2)
    assert to_categorical(np.array([-2, 7]), np.array([-2, 4, 7])).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert to_categorical(np.zeros(0, np.int64), 4).shape == (0, 4)


@pytest.mark.parametrize("y,k,exc,match", [
    ([0, 3], 3, ValueError, "label 3, which is not one of the 3 classes"),
    ([-1], 3, ValueError, "label -1"),
    ([5], [1, 4, 9], ValueError, "label 5"),
    ([0.5], 2, TypeError, "integer labels"),
    ([0], 0, ValueError, "num_classes must be a positive int, got 0"),
    ([0], [[0, 1]], TypeError, "num_classes must be an int or a 1-D array"),
])
def test_to_categorical_errors(y, k, exc, match):
    with pytest.raises(exc, match=match):
        to_categorical(np.asarray(y), k)


def test_one_hot_map_on_balanced_source():
    """The n-class x m-sample balanced batch generator's categorical=True: ds.map(OneHotLabels(...)) yields one-hot label rows."""
    labels = np.repeat(np.array([3, 8, 10]), [4, 2, 5])
    X = np.arange(len(labels))
    s = BalancedSampler(labels, 2, 2, seed=1)
    ds = ArrayDataSource([X, labels], sampler=s).map(OneHotLabels(s.classes))
    for bX, by in ds.batch_iterator(4):
        assert by.shape == (4, 3) and by.dtype == np.float32
        assert np.array_equal(s.classes[by.argmax(axis=1)], labels[bX])
    first = OneHotLabels(2, position=0, dtype=np.int64)(np.array([1, 0]), "untouched")
    assert first[0].tolist() == [[0, 1], [1, 0]] and first[1] == "untouched"


def test_one_hot_map_is_picklable_and_validates():
    import pickle

    f = pickle.loads(pickle.dumps(OneHotLabels(4)))
    assert f(np.array([3]))[0].tolist() == [[0, 0, 0, 1]]
    with pytest.raises(ValueError, match="num_classes"):
        OneHotLabels(0)
    with pytest.raises(TypeError, match="position must be an int"):
        OneHotLabels(2, position="y")
