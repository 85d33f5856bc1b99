"""SubsetSampler: only members, each with its multiplicity, once per repeat."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from batchup.samplers import SubsetSampler
from tests.helpers import assert_resumes

subsets = hnp.arrays(np.int64, st.integers(0, 80), elements=st.integers(0, 500))


@given(subsets, st.integers(1, 30), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_only_members_once_per_repeat(indices, bs, r, seed):
    """P7: each epoch is a permutation of the subset (duplicates kept)."""
    s = SubsetSampler(indices, repeats=r)
    for it in (s.in_order_indices_batch_iterator(bs), s.shuffled_indices_batch_iterator(bs, seed)):
        batches = list(it)
        allix = np.concatenate(batches) if batches else np.zeros(0, np.int64)
        n = len(indices)
        assert len(allix) == n * r
        for e in range(r):
            assert sorted(allix[e * n:(e + 1) * n].tolist()) == sorted(indices.tolist())
        assert all(len(b) == bs for b in batches[:-1])


def test_in_order_follows_the_given_order():
    assert [b.tolist() for b in SubsetSampler([5, 1, 3], repeats=2).in_order_indices_batch_iterator(4)] == [
        [5, 1, 3, 5], [1, 3]]


def test_randomstate_permutes_the_indices_like_batchup_02():
    idx = np.array([10, 20, 30, 40, 50])
    got = np.concatenate(list(SubsetSampler(idx).shuffled_indices_batch_iterator(2, np.random.RandomState(4))))
    assert got.tolist() == np.random.RandomState(4).permutation(idx).tolist()


def test_yielded_batches_do_not_alias_the_indices():
    idx = np.arange(6)
    s = SubsetSampler(idx)
    for b in s.in_order_indices_batch_iterator(3):
        b[:] = -1
    assert idx.tolist() == list(range(6))
    assert [b.tolist() for b in s.in_order_indices_batch_iterator(3)] == [[0, 1, 2], [3, 4, 5]]


def test_map_indices():
    assert SubsetSampler([9, 8, 7]).map_indices(np.array([2, 0])).tolist() == [7, 9]


def test_list_indices_are_accepted():
    assert SubsetSampler([1, 2]).num_indices_generated() == 2
    assert SubsetSampler([1, 2], repeats=-1).num_indices_generated() == np.inf


@pytest.mark.parametrize("bad,exc,match", [
    ([[1, 2]], ValueError, "1-D"), ([0.5, 1.0], TypeError, "integer"), ([True, False], TypeError, "integer"),
    ([-1, 2], IndexError, "negative"),
])
def test_bad_indices(bad, exc, match):
    with pytest.raises(exc, match=match):
        SubsetSampler(bad)


def test_resume():
    assert_resumes(lambda: SubsetSampler([4, 2, 9, 7, 1], repeats=3).shuffled_indices_batch_iterator(2, 5))
    assert_resumes(lambda: SubsetSampler([4, 2, 9], repeats=2).shuffled_indices_batch_iterator(2, np.random.RandomState(1)))
