"""Finite weighted epochs (num_samples=, replace=False, repeats=) beside BatchUp 0.2's endless stream."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from batchup._rng import SeedKey
from batchup.samplers import (
    FlatPlan,
    StreamPlan,
    WeightedSampler,
    WeightedSubsetSampler,
    num_batches,
)
from batchup.sources import ArrayDataSource
from tests.helpers import assert_batches_equal, assert_resumes, stream

weights = hnp.arrays(
    np.float64, st.integers(1, 40), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 7.5]) | st.floats(0, 10)
).filter(lambda w: w.sum() > 0)
seeds = st.integers(0, 2**32 - 1)


def flat(batches):
    return np.concatenate(batches) if batches else np.zeros(0, np.int64)


@given(weights, st.integers(1, 50), st.integers(1, 3), st.integers(1, 16), seeds, st.booleans())
def test_with_replacement_counts_and_support(w, k, repeats, bs, seed, drop_last):
    """Only w > 0 indices; num_samples * repeats indices in batches of bs (last short or dropped)."""
    s = WeightedSampler(w, num_samples=k, repeats=repeats)
    assert s.num_indices_generated() == k * repeats
    n_expected = (k * repeats) // bs if drop_last else num_batches(k * repeats, bs)
    if n_expected == 0:
        with pytest.raises(ValueError, match="no batch"):
            s.shuffled_indices_batch_iterator(bs, seed, drop_last=drop_last)
        return
    it = s.shuffled_indices_batch_iterator(bs, seed, drop_last=drop_last)
    assert isinstance(it.plan, FlatPlan)
    assert len(it) == n_expected
    batches = stream(it)
    assert len(batches) == n_expected
    assert all(len(b) == bs for b in batches[:-1]) and all(len(b) >= 1 for b in batches)
    allix = flat(batches)
    assert allix.dtype == np.int64
    assert len(allix) == (n_expected * bs if drop_last else k * repeats)
    assert (w[allix] > 0).all()


@given(weights, st.data(), st.integers(1, 3), st.integers(1, 16), seeds)
def test_without_replacement_distinct_within_each_epoch(w, data, repeats, bs, seed):
    """replace=False: each epoch holds num_samples distinct indices of positive weight."""
    positive = int(np.count_nonzero(w))
    k = data.draw(st.integers(1, positive))
    s = WeightedSampler(w, num_samples=k, replace=False, repeats=repeats)
    allix = flat(stream(s.shuffled_indices_batch_iterator(bs, seed)))
    assert len(allix) == k * repeats
    for e in range(repeats):
        epoch = allix[e * k:(e + 1) * k]
        assert len(set(epoch.tolist())) == k
        assert (w[epoch] > 0).all()


@given(weights, st.integers(1, 16), seeds)
def test_without_replacement_default_epoch_is_every_positive_index(w, bs, seed):
    s = WeightedSampler(w, replace=False)
    assert s.num_samples == np.count_nonzero(w) == s.num_indices_generated()
    allix = flat(stream(s.shuffled_indices_batch_iterator(bs, seed)))
    assert sorted(allix.tolist()) == np.flatnonzero(w).tolist()


@given(weights, st.integers(1, 30), st.integers(1, 8), seeds, st.booleans())
def test_resume_at_every_step_equals_tail(w, k, bs, seed, replace):
    """P10 for finite weighted epochs, both with and without replacement."""
    k = min(k, int(np.count_nonzero(w))) if not replace else k
    s = WeightedSampler(w, num_samples=k, replace=replace, repeats=2)
    assert_resumes(lambda: s.shuffled_indices_batch_iterator(bs, seed))


@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("make_rng", [np.random.RandomState, np.random.default_rng])
def test_resume_drawing_from_rng_objects(make_rng, replace):
    w = np.array([1.0, 0.0, 3.0, 2.0, 0.5, 4.0])
    s = WeightedSampler(w, num_samples=4, replace=replace, repeats=3)
    ref = assert_resumes(lambda: s.shuffled_indices_batch_iterator(3, make_rng(8)))
    assert len(flat(ref)) == 12


def test_resume_endless_epochs_and_subset_and_drop_last():
    w = np.array([1.0, 0.0, 3.0, 2.0])
    s = WeightedSampler(w, num_samples=3, replace=False, repeats=-1)
    assert s.num_indices_generated() == np.inf
    it = s.shuffled_indices_batch_iterator(2, 4)
    with pytest.raises(TypeError, match="no length"):
        len(it)
    assert_resumes(lambda: s.shuffled_indices_batch_iterator(2, 4), limit=10)
    sub = WeightedSubsetSampler([2.0, 1.0, 0.0], [7, 3, 5], num_samples=5, repeats=2)
    ref = assert_resumes(lambda: sub.shuffled_indices_batch_iterator(4, 1, drop_last=True))
    assert [len(b) for b in ref] == [4, 4]
    assert set(flat(ref).tolist()) <= {7, 3}


def test_epoch_depends_only_on_seed_and_epoch():
    """P11: epoch e of a seeded run is a function of (seed, e)."""
    w = np.array([1.0, 2.0, 0.0, 4.0, 1.0])
    a = flat(stream(WeightedSampler(w, num_samples=6, repeats=3).shuffled_indices_batch_iterator(4, 77)))
    b = flat(stream(WeightedSampler(w, num_samples=6, repeats=3).shuffled_indices_batch_iterator(5, 77)))
    assert np.array_equal(a, b)  # the batch size does not change the draws
    one = flat(stream(WeightedSampler(w, num_samples=6).shuffled_indices_batch_iterator(6, SeedKey(77))))
    assert np.array_equal(a[:6], one)
    c = flat(stream(WeightedSampler(w, num_samples=6, repeats=3).shuffled_indices_batch_iterator(4, 78)))
    assert not np.array_equal(a, c)


def test_golden_streams():
    """A silent change to the weighted epoch draws fails here."""
    w = np.array([1.0, 0.0, 2.0, 3.0, 0.5])
    rep = WeightedSampler(w, num_samples=5, repeats=2).shuffled_indices_batch_iterator(4, 2024)
    norep = WeightedSampler(w, replace=False, repeats=2).shuffled_indices_batch_iterator(4, 2024)
    assert [b.tolist() for b in rep] == GOLDEN_REPLACE
    assert [b.tolist() for b in norep] == GOLDEN_NO_REPLACE


GOLDEN_REPLACE = [[3, 3, 2, 3], [2, 0, 2, 0], [3, 2]]
GOLDEN_NO_REPLACE = [[3, 2, 0, 4], [3, 0, 2, 4]]


# -- frequencies (deterministic: fixed seeds) ------------------------------------------------------------------


W = np.array([1.0, 2.0, 3.0, 0.0, 4.0, 0.5])


def test_with_replacement_frequencies_chi_square():
    """P8: 20k draws in one epoch follow the weights (chi-square, fixed seed)."""
    from scipy.stats import chisquare

    for shuffle in (42, np.random.RandomState(42)):
        draws = flat(stream(WeightedSampler(W, num_samples=20_000).shuffled_indices_batch_iterator(500, shuffle)))
        counts = np.bincount(draws, minlength=len(W))
        assert counts.sum() == 20_000 and counts[3] == 0
        expected = W[W > 0] / W.sum() * 20_000
        assert chisquare(counts[W > 0], expected).pvalue > 1e-6


def test_without_replacement_first_and_second_draws_chi_square():
    """Without replacement the first index of an epoch is drawn by weight, the second by
    weight among the rest (successive sampling): 20k epochs, chi-square on both positions."""
    from scipy.stats import chisquare

    p = W / W.sum()
    epochs = 20_000
    draws = flat(stream(
        WeightedSampler(W, num_samples=2, replace=False, repeats=epochs).shuffled_indices_batch_iterator(2000, 9)
    )).reshape(epochs, 2)
    assert (draws[:, 0] != draws[:, 1]).all()
    first = np.bincount(draws[:, 0], minlength=len(W))
    second = np.bincount(draws[:, 1], minlength=len(W))
    assert first[3] == second[3] == 0
    pos = W > 0
    assert chisquare(first[pos], p[pos] * epochs).pvalue > 1e-6
    p_second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(len(p)) if i != j) for j in range(len(p))])
    assert chisquare(second[pos], p_second[pos] * epochs).pvalue > 1e-6


# -- the default endless stream is unchanged -------------------------------------------------------------------


def test_default_stream_is_still_endless_and_bit_compatible():
    w = np.random.RandomState(0).rand(25)
    s = WeightedSampler(w)
    assert s.num_samples is None and s.replace is True and s.num_indices_generated() == np.inf
    it = s.shuffled_indices_batch_iterator(7, np.random.RandomState(5))
    assert isinstance(it.plan, StreamPlan)
    ref = np.random.RandomState(5)
    for b in itertools.islice(it, 6):
        assert b.tolist() == ref.choice(25, size=(7,), p=s.weights).tolist()
    seeded = s.shuffled_indices_batch_iterator(7, 3)
    for i, b in enumerate(itertools.islice(seeded, 4)):
        u = SeedKey(3).generator(i).random(7)
        assert b.tolist() == s._cdf.searchsorted(u, side="right").tolist()


def test_positional_parameters_unchanged():
    s = WeightedSubsetSampler([1.0, 3.0], [4, 8])
    assert s.indices.tolist() == [4, 8]
    with pytest.raises(TypeError):
        WeightedSampler([1.0, 2.0], 5)  # num_samples is keyword-only
    with pytest.raises(TypeError):
        WeightedSubsetSampler([1.0], [0], 5)


# -- data sources ----------------------------------------------------------------------------------------------


def test_array_data_source_len_and_batch_map_without_n_batches():
    X = np.arange(10, dtype=float)
    w = np.where(X >= 5, 1.0, 0.0)
    ds = ArrayDataSource([X], sampler=WeightedSampler(w, num_samples=12))
    assert ds.num_samples() == 12
    assert len(ds.batch_iterator(5, shuffle=0)) == 3
    (mean,) = ds.batch_map_mean(lambda x: (x.sum(),), 5, shuffle=0)
    assert 5.0 <= mean <= 9.0
    (cat,) = ds.batch_map_concat(lambda x: (x,), 5, shuffle=0)
    assert cat.shape == (12,) and (cat >= 5).all()
    ds = ArrayDataSource([X], sampler=WeightedSampler(w, replace=False))
    (cat,) = ds.batch_map_concat(lambda x: (x,), 2, shuffle=np.random.RandomState(1))
    assert sorted(cat.tolist()) == [5.0, 6.0, 7.0, 8.0, 9.0]


def test_array_data_source_resume_with_grouped_gather():
    X = np.arange(300, dtype=np.float32)
    w = np.linspace(0.0, 1.0, 300)
    ds = ArrayDataSource([X], sampler=WeightedSampler(w, num_samples=250, repeats=2, replace=False))
    ref = assert_resumes(lambda: ds.batch_iterator(8, shuffle=5), every=7)
    assert sum(len(b[0]) for b in ref) == 500


def test_class_balancing_epochs():
    y = np.array([0] * 90 + [1] * 10)
    s = WeightedSampler.class_balancing_sampler(y, num_samples=20_000)
    draws = flat(stream(s.shuffled_indices_batch_iterator(1000, 0)))
    assert len(draws) == 20_000 and 0.47 < (y[draws] == 1).mean() < 0.53
    sub = WeightedSubsetSampler.class_balancing_sampler(y, np.arange(85, 100), replace=False)
    assert sub.num_indices_generated() == 15


def test_shard_option_splits_each_epoch():
    """Finite epochs accept shard=: ranks built with one seed get disjoint parts of each epoch."""
    w = np.arange(1.0, 12.0)
    s = WeightedSampler(w, replace=False)
    parts = [flat(stream(s.shuffled_indices_batch_iterator(3, 6, shard=(r, 3)))) for r in range(3)]
    assert len({len(p) for p in parts}) == 1
    whole = flat(stream(s.shuffled_indices_batch_iterator(3, 6)))
    got = np.concatenate(parts)
    assert set(got.tolist()) == set(whole.tolist()) == set(range(11))
    assert len(got) == 12  # 11 padded to a multiple of 3 by wrapping
    with pytest.raises(ValueError, match="int seed shared across ranks"):
        s.shuffled_indices_batch_iterator(3, np.random.RandomState(0), shard=(0, 2))


# -- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"num_samples": 0}, ValueError, "num_samples must be a positive int, got 0"),
    ({"num_samples": -4}, ValueError, "num_samples must be a positive int, got -4"),
    ({"num_samples": 2.5}, TypeError, "num_samples must be an int"),
    ({"num_samples": True}, TypeError, "num_samples must be an int"),
    ({"replace": "no"}, TypeError, "replace must be a bool, got 'no'"),
    ({"replace": False, "num_samples": 3}, ValueError, "num_samples=3 exceeds the 2 indices with a positive weight"),
    ({"repeats": 3}, ValueError, "repeats=3 needs finite epochs: pass num_samples="),
    ({"num_samples": 2, "repeats": 0}, ValueError, "repeats must be >= 1 or -1"),
    ({"num_samples": 2, "repeats": 1.5}, TypeError, "repeats must be an int"),
])
def test_bad_epoch_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        WeightedSampler([1.0, 0.0, 2.0], **kwargs)


def test_in_order_and_state_mismatch():
    s = WeightedSampler([1.0, 2.0], num_samples=4)
    with pytest.raises(NotImplementedError, match="in-order"):
        s.in_order_indices_batch_iterator(2)
    with pytest.raises(NotImplementedError, match="in-order"):
        ArrayDataSource([np.zeros(2)], sampler=s).batch_iterator(2)
    it = s.shuffled_indices_batch_iterator(2, 0)
    next(it)
    state = it.state_dict()
    with pytest.raises(ValueError, match="weights_crc"):
        WeightedSampler([2.0, 1.0], num_samples=4).shuffled_indices_batch_iterator(2, 0).load_state_dict(state)
    with pytest.raises(ValueError, match="replace"):
        WeightedSampler([1.0, 2.0], num_samples=4, replace=False).shuffled_indices_batch_iterator(2, 0).load_state_dict(state)
    with pytest.raises(ValueError, match="num_samples"):
        WeightedSampler([1.0, 2.0], num_samples=5).shuffled_indices_batch_iterator(2, 0).load_state_dict(state)
    with pytest.raises(ValueError, match="kind"):
        WeightedSampler([1.0, 2.0]).shuffled_indices_batch_iterator(2, 0).load_state_dict(state)
    assert_batches_equal(stream(it), stream(_restored(s, state)))


def _restored(s, state):
    it = s.shuffled_indices_batch_iterator(2, 0)
    it.load_state_dict(state)
    return it


def test_extreme_weights_without_replacement_do_not_overflow(recwarn):
    s = WeightedSampler([1e-300, 1.0, 1e-12], replace=False)
    draws = flat(stream(s.shuffled_indices_batch_iterator(3, 0)))
    assert draws.tolist() == [1, 2, 0]  # the heavy index first, then by weight (overwhelmingly likely)
    assert not [r for r in recwarn if issubclass(r.category, RuntimeWarning)]


def test_a_tiny_positive_weight_still_counts_without_replacement():
    """A weight of 5e-324 underflows to 0 when normalised; it is still a positive weight to draw."""
    s = WeightedSampler(np.array([2.0, 5e-324]), num_samples=2, replace=False, repeats=2)
    epochs = [sorted(b.tolist()) for b in s.shuffled_indices_batch_iterator(2, 0)]
    assert epochs == [[0, 1], [0, 1]]
