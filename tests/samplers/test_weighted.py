"""WeightedSampler / WeightedSubsetSampler: BatchUp 0.2 draws, zero weights, class balancing, errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from batchup.samplers import WeightedSampler, WeightedSubsetSampler, class_balancing_weights
from tests.helpers import assert_resumes

weights = hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(0, 10)).filter(lambda w: w.sum() > 0)


@given(weights, st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_zero_weights_never_drawn(w, bs, seed):
    """P8: only indices with positive weight appear; every batch is full."""
    it = WeightedSampler(w).shuffled_indices_batch_iterator(bs, seed)
    for b in itertools.islice(it, 5):
        assert len(b) == bs
        assert (w[b] > 0).all()


@pytest.mark.parametrize("rng_factory", [np.random.RandomState, np.random.default_rng])
def test_draws_equal_rng_choice(rng_factory):
    """Every batch equals rng.choice(n, size=(bs,), p=weights), as in BatchUp 0.2."""
    w = np.random.RandomState(0).rand(25)
    s = WeightedSampler(w)
    it = s.shuffled_indices_batch_iterator(7, rng_factory(5))
    ref = rng_factory(5)
    for b in itertools.islice(it, 6):
        assert b.tolist() == ref.choice(25, size=(7,), p=s.weights).tolist()


def test_subset_draws_equal_rng_choice():
    idx = np.array([3, 9, 11, 40])
    s = WeightedSubsetSampler(np.array([1.0, 2.0, 0.0, 3.0]), idx)
    it = s.shuffled_indices_batch_iterator(6, np.random.RandomState(2))
    ref = np.random.RandomState(2)
    for b in itertools.islice(it, 4):
        assert b.tolist() == ref.choice(idx, size=(6,), p=s.sub_weights).tolist()
    assert s.map_indices(np.array([1, 3])).tolist() == [9, 40]


def test_frequencies_follow_weights_chi_square():
    """P8: with a fixed seed and 20k draws the frequencies pass a chi-square test."""
    from scipy.stats import chisquare

    w = np.array([1.0, 2.0, 3.0, 0.0, 4.0])
    it = WeightedSampler(w).shuffled_indices_batch_iterator(1000, 42)
    draws = np.concatenate(list(itertools.islice(it, 20)))
    counts = np.bincount(draws, minlength=5)
    assert counts[3] == 0
    expected = w[w > 0] / w.sum() * len(draws)
    assert chisquare(counts[w > 0], expected).pvalue > 1e-6


def test_class_balancing_weights_exact_form():
    y = np.array([0, 0, 0, 2, 2, 5])
    w = WeightedSampler.class_balancing_sample_weights(y)
    assert w.tolist() == [1.0 / (3 * 3)] * 3 + [1.0 / (2 * 3)] * 2 + [1.0 / (1 * 3)]
    assert np.isclose(w.sum(), 1.0)


def test_class_balancing_accepts_n_classes_and_does_not_warn(recwarn):
    y = np.array([0, 0, 3])
    w = WeightedSampler.class_balancing_sample_weights(y=y, n_classes=y.max() + 1)
    assert w.tolist() == [0.25, 0.25, 0.5]
    assert not [r for r in recwarn if issubclass(r.category, RuntimeWarning)]
    s = WeightedSampler.class_balancing_sampler(y=y, n_classes=6)
    assert isinstance(s, WeightedSampler)


def test_balanced_classes_drawn_equally():
    y = np.array([0] * 90 + [1] * 10)
    it = WeightedSampler.class_balancing_sampler(y).shuffled_indices_batch_iterator(1000, 0)
    frac = (y[np.concatenate(list(itertools.islice(it, 20)))] == 1).mean()
    assert 0.45 < frac < 0.55


def test_subset_class_balancing_counts_within_subset():
    y = np.array([0, 0, 1, 1, 1, 0])
    s = WeightedSubsetSampler.class_balancing_sampler(y, np.array([0, 2, 3]))
    assert s.sub_weights.tolist() == [0.5, 0.25, 0.25]


def test_in_order_not_supported_at_call():
    with pytest.raises(NotImplementedError, match="in-order"):
        WeightedSampler([1.0, 2.0]).in_order_indices_batch_iterator(2)
    with pytest.raises(NotImplementedError):
        WeightedSubsetSampler([1.0], [0]).in_order_indices_batch_iterator(2)


def test_infinite():
    assert WeightedSampler([1.0]).num_indices_generated() == np.inf


@pytest.mark.parametrize("bad,match", [
    ([0.0, 0.0], "sum to 0"), ([1.0, -1.0], r"weights\[1\]"), ([1.0, np.nan], r"weights\[1\]"),
    ([np.inf, 1.0], r"weights\[0\]"), ([[1.0, 2.0]], "1-D"),
])
def test_bad_weights(bad, match):
    with pytest.raises(ValueError, match=match):
        WeightedSampler(bad)


def test_subset_length_mismatch_checked_first():
    with pytest.raises(ValueError, match="same length"):
        WeightedSubsetSampler([0.0, 0.0], [1])


@pytest.mark.parametrize("bad", [[], [0.5, 1.5], [[0, 1]], [-1, 0]])
def test_class_balancing_bad_labels(bad):
    with pytest.raises(ValueError, match="integer labels"):
        class_balancing_weights(np.asarray(bad))


def test_resume_weighted():
    w = [1.0, 0.0, 2.0, 5.0]
    assert_resumes(lambda: WeightedSampler(w).shuffled_indices_batch_iterator(3, 9), limit=12)
    assert_resumes(lambda: WeightedSampler(w).shuffled_indices_batch_iterator(3, np.random.RandomState(9)), limit=8)
