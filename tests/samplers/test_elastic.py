"""Elastic resume: a checkpoint from N ranks continues on M ranks, nothing lost, nothing repeated.

Ranks are simulated in one process: N iterators (one per rank) run in
lockstep to a position, rank 0's state is saved, and M fresh iterators load
it. The samples the old ranks consumed plus those the new ranks yield (their
wrap-around padding removed) must cover every epoch exactly once.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup.samplers import BalancedSampler, ShardSpec, WeightedSampler
from batchup.samplers.elastic import remaining_positions
from batchup.sources import ArrayDataSource, ChoiceDataSource, CompositeDataSource
from tests.helpers import assert_resumes


def _spec(rank, world, remainder, split):
    return ShardSpec(rank, world, remainder, split)


def _run(ds, bs, ranks, steps, **kw):
    """Advance every rank ``steps`` batches in lockstep; return the real ids they saw and rank 0's state."""
    its = [ds.batch_iterator(bs, shard=s, **kw) for s in ranks]
    seen = []
    for _ in range(steps):
        for it in its:
            (ids,) = next(it)[:1]
            seen.extend(ids[~it.last_padding].tolist())
    return seen, json.loads(json.dumps(its[0].state_dict())), its


def _finish(ds, bs, ranks, state, **kw):
    """Load ``state`` into one fresh iterator per rank; return their real ids and their batch counts."""
    ids, counts = [], []
    for s in ranks:
        it = ds.batch_iterator(bs, shard=s, **kw)
        it.load_state_dict(state)
        counts.append(len(it))
        n = 0
        for (batch,) in it:
            ids.extend(batch[~it.last_padding].tolist())
            n += 1
        assert n == counts[-1]
    return ids, counts


@given(
    n=st.integers(1, 60), bs=st.integers(1, 7), old=st.integers(1, 5), new=st.integers(1, 5),
    data=st.data(), split=st.sampled_from(["strided", "contiguous"]), repeats=st.integers(1, 3),
)
def test_pad_resume_on_any_world_size_covers_every_epoch_exactly_once(n, bs, old, new, data, split, repeats):
    ds = ArrayDataSource([np.arange(n)], repeats=repeats)
    old_ranks = [_spec(r, old, "pad", split) for r in range(old)]
    total = len(ds.batch_iterator(bs, shard=old_ranks[0], shuffle=3))
    steps = data.draw(st.integers(0, total))
    seen, state, _ = _run(ds, bs, old_ranks, steps, shuffle=3)
    rest, counts = _finish(ds, bs, [_spec(r, new, "pad", split) for r in range(new)], state, shuffle=3)
    assert len(set(counts)) == 1  # equal batch counts on every new rank
    assert np.bincount(seen + rest, minlength=n).tolist() == [repeats] * n


@given(n=st.integers(1, 60), bs=st.integers(1, 7), old=st.integers(1, 4), new=st.integers(1, 4), data=st.data())
def test_drop_resume_never_repeats_and_keeps_counts_equal(n, bs, old, new, data):
    ds = ArrayDataSource([np.arange(n)])
    old_ranks = [_spec(r, old, "drop", "strided") for r in range(old)]
    if n < old or n < new:
        with pytest.raises(ValueError, match="no batch"):
            ds.batch_iterator(bs, shard=_spec(0, max(old, new), "drop", "strided"), shuffle=1)
        return
    total = len(ds.batch_iterator(bs, shard=old_ranks[0], shuffle=1))
    steps = data.draw(st.integers(0, total))
    seen, state, _ = _run(ds, bs, old_ranks, steps, shuffle=1)
    rest, counts = _finish(ds, bs, [_spec(r, new, "drop", "strided") for r in range(new)], state, shuffle=1)
    assert len(set(counts)) == 1
    assert len(seen + rest) == len(set(seen + rest))  # nothing twice
    assert len(rest) >= n - n % old - len(seen) - (new - 1)  # at most new - 1 left out by the new split


@pytest.mark.parametrize("old,new", [(4, 3), (2, 5), (1, 3), (3, 1), (2, 2)])
def test_later_epochs_are_the_normal_new_world_epochs(old, new):
    ds = ArrayDataSource([np.arange(29)], repeats=3)
    _, state, _ = _run(ds, 2, [ShardSpec(r, old) for r in range(old)], 4, shuffle=8)
    for r in range(new):
        resumed = ds.batch_iterator(2, shard=ShardSpec(r, new), shuffle=8)
        resumed.load_state_dict(state)
        plan = resumed.plan
        fresh = ArrayDataSource([np.arange(29)], repeats=3).plan(2, shuffle=8, shard=ShardSpec(r, new))
        # the epochs after the resumed one are the original run's, split as a fresh M-way run splits them
        start = getattr(plan, "_start", 0)  # the same world resumes the original plan itself
        for k in range(1, 3 - start):
            assert (plan._order(k) == fresh._order(start + k)).all()


def test_a_run_resumed_twice_on_three_world_sizes_covers_each_epoch_once():
    n, bs = 41, 3
    ds = ArrayDataSource([np.arange(n)], repeats=2)
    seen, state, _ = _run(ds, bs, [ShardSpec(r, 4) for r in range(4)], 2, shuffle=5)
    its = []
    for r in range(3):
        it = ds.batch_iterator(bs, shard=ShardSpec(r, 3), shuffle=5)
        it.load_state_dict(state)
        its.append(it)
    for _ in range(3):
        for it in its:
            (ids,) = next(it)
            seen.extend(ids[~it.last_padding].tolist())
    state2 = json.loads(json.dumps(its[1].state_dict()))
    assert state2["inner"]["plan"]["resume"]["cuts"]  # the first cut is remembered
    rest, counts = _finish(ds, bs, [ShardSpec(r, 5) for r in range(5)], state2, shuffle=5)
    assert len(set(counts)) == 1
    assert np.bincount(seen + rest, minlength=n).tolist() == [2] * n


def test_a_resumed_run_resumes_exactly_on_the_same_world():
    ds = ArrayDataSource([np.arange(31)], repeats=2)
    _, state, _ = _run(ds, 4, [ShardSpec(r, 2) for r in range(2)], 3, shuffle=2)

    def make():
        it = ds.batch_iterator(4, shard=ShardSpec(1, 3), shuffle=2)
        it.load_state_dict(state)
        return it

    assert_resumes(make)


def test_batch_numbers_continue_across_the_resume():
    ds = ArrayDataSource([np.arange(20)]).map(lambda x, rng: (x + 0 * rng.random(),), seed=3)
    _, state, its = _run(ds, 2, [ShardSpec(r, 2) for r in range(2)], 3, shuffle=4)
    resumed = ds.batch_iterator(2, shard=ShardSpec(0, 4), shuffle=4)
    resumed.load_state_dict(state)
    assert resumed.plan.batch_number(0) == its[0].plan.batch_number(3)


def test_balanced_batches_resume_whole_on_another_world():
    labels = np.repeat(np.arange(6), [5, 7, 4, 6, 8, 3])
    ds = ArrayDataSource([np.arange(len(labels)), labels], sampler=BalancedSampler(labels, 2, 2, seed=1))
    per_epoch = ds.sampler.batches_per_epoch
    seen_batches = []
    its = [ds.batch_iterator(4, shard=ShardSpec(r, 2)) for r in range(2)]
    for _ in range(2):
        for it in its:
            seen_batches.append(next(it)[0].tolist())
    state = json.loads(json.dumps(its[0].state_dict()))
    rest = []
    counts = []
    for r in range(3):
        it = ds.batch_iterator(4, shard=ShardSpec(r, 3))
        it.load_state_dict(state)
        counts.append(len(it))
        rest.extend(b[0].tolist() for b, pad in ((b, it.last_padding) for b in it) if not pad.any())
    assert len(set(counts)) == 1
    full = [b[0].tolist() for b in ds.batch_iterator(4)]
    assert sorted(map(tuple, seen_batches + rest)) == sorted(map(tuple, full)) and len(full) == per_epoch
    for b in rest:
        assert len(set(labels[b].tolist())) == 2  # still two classes per batch


def test_finite_weighted_epochs_resume_elastically():
    ds = ArrayDataSource([np.arange(30)], sampler=WeightedSampler(np.ones(30), replace=False))
    seen, state, _ = _run(ds, 4, [ShardSpec(r, 3) for r in range(3)], 1, shuffle=6)
    rest, counts = _finish(ds, 4, [ShardSpec(r, 2) for r in range(2)], state, shuffle=6)
    assert sorted(seen + rest) == list(range(30)) and len(set(counts)) == 1


def test_weighted_streams_continue_per_rank():
    ds = ArrayDataSource([np.arange(10)], sampler=WeightedSampler(np.arange(1.0, 11.0)))
    its = [ds.batch_iterator(3, shuffle=2, shard=(r, 2)) for r in range(2)]
    for it in its:
        next(it)
    state = its[0].state_dict()
    cont = [next(it)[0].tolist() for it in its]
    for r in range(2):
        fresh = ds.batch_iterator(3, shuffle=2, shard=(r, 3))
        fresh.load_state_dict(state)
        assert next(fresh)[0].tolist() == cont[r]  # rank r goes on with its own stream


def test_composites_resume_elastically_member_by_member():
    a = ArrayDataSource([np.arange(24)])
    b = ArrayDataSource([np.arange(100, 124)])
    ds = CompositeDataSource([a, b])
    its = [ds.batch_iterator(2, shard=ShardSpec(r, 2), shuffle=9) for r in range(2)]
    seen = []
    for _ in range(3):
        for it in its:
            x, y = next(it)
            seen.extend(x.tolist())
    state = json.loads(json.dumps(its[0].state_dict()))
    rest = []
    for r in range(3):
        it = ds.batch_iterator(2, shard=ShardSpec(r, 3), shuffle=9)
        it.load_state_dict(state)
        for x, y in it:
            pad = it.last_padding[0]
            rest.extend(x[~pad].tolist())
            assert (y - 100 == y - 100).all()
    assert np.bincount(seen + rest, minlength=24).tolist() == [1] * 24


def test_where_elastic_resume_cannot_work_it_says_so():
    a, b = ArrayDataSource([np.arange(12)]), ArrayDataSource([np.arange(12)])
    choice = ChoiceDataSource([a, b])
    it = choice.batch_iterator(2, shard=(0, 2), shuffle=1)
    next(it)
    with pytest.raises(ValueError, match="another number of ranks"):
        choice.batch_iterator(2, shard=(0, 3), shuffle=1).load_state_dict(it.state_dict())
    ds = ArrayDataSource([np.arange(12)])
    other = ds.batch_iterator(2, shard=(0, 2), shuffle=1)
    next(other)
    with pytest.raises(ValueError, match="seed"):
        ds.batch_iterator(2, shard=(0, 3), shuffle=2).load_state_dict(other.state_dict())


def test_remaining_positions_examples():
    assert remaining_positions(7, 2, "strided", "pad", 0).tolist() == list(range(7))
    assert remaining_positions(7, 2, "strided", "pad", 4).tolist() == []
    with pytest.raises(ValueError, match="consumed"):
        remaining_positions(7, 2, "strided", "pad", 5)
