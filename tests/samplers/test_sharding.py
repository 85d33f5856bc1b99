"""Rank sharding: disjoint, complete, equal counts, no communication."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup.samplers import ShardSpec, StandardSampler, SubsetSampler, WeightedSampler
from batchup.sources import ArrayDataSource
from tests.helpers import assert_resumes


def epoch_of(rank, world, n, bs, seed, remainder="pad", split="strided"):
    spec = ShardSpec(rank, world, remainder, split)
    it = StandardSampler(n).shuffled_indices_batch_iterator(bs, seed, shard=spec)
    batches = list(it)
    return batches


@given(st.integers(0, 200), st.integers(1, 8), st.integers(1, 16), st.integers(0, 2**32 - 1),
       st.sampled_from(["pad", "drop"]), st.sampled_from(["strided", "contiguous"]))
def test_shards_disjoint_complete_equal(n, world, bs, seed, remainder, split):
    """P9: pairwise disjoint (up to padding), union is the epoch, equal batch counts and sizes."""
    per_rank = [epoch_of(r, world, n, bs, seed, remainder, split) for r in range(world)]
    counts = {len(b) for b in per_rank}
    assert len(counts) == 1, "every rank must get the same number of batches"
    sizes = {tuple(len(x) for x in b) for b in per_rank}
    assert len(sizes) == 1, "every rank must get batches of the same sizes"
    ids = [np.concatenate(b).tolist() if b else [] for b in per_rank]
    flat = sum(ids, [])
    if remainder == "drop":
        assert len(flat) == len(set(flat)) == n - n % world
    else:
        assert set(flat) == set(range(n))
        assert len(flat) == -(-n // world) * world if n else len(flat) == 0
        assert len(flat) - len(set(flat)) < world


@given(st.integers(1, 100), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_world_of_one_equals_unsharded(n, bs, seed):
    a = [b.tolist() for b in StandardSampler(n).shuffled_indices_batch_iterator(bs, seed)]
    b = [b.tolist() for b in StandardSampler(n).shuffled_indices_batch_iterator(bs, seed, shard=(0, 1))]
    assert a == b


def test_padding_mask_marks_duplicates():
    seen = []
    for r in range(3):
        it = StandardSampler(10).in_order_indices_batch_iterator(2, shard=(r, 3))
        for b in it:
            seen.extend(b[~it.last_padding].tolist())
    assert sorted(seen) == list(range(10))


def test_padding_mask_through_the_data_iterator():
    X = np.arange(10)
    ds = ArrayDataSource([X, X * 2]).map(lambda x, y: (x, y))
    kept = []
    for r in range(4):
        it = ds.batch_iterator(2, shuffle=6, shard=(r, 4))
        for x, _ in it:
            kept.extend(x[~it.last_padding].tolist())
    assert sorted(kept) == list(range(10))
    assert ArrayDataSource([X]).batch_iterator(2).last_padding is None
    assert ArrayDataSource([np.arange(1000)]).batch_iterator(2, shard=(0, 2))._group == 1


def test_subset_sharding_and_repeats():
    per_rank = []
    for r in range(2):
        it = SubsetSampler([5, 6, 7, 8, 9], repeats=2).shuffled_indices_batch_iterator(2, 3, shard=(r, 2))
        per_rank.append(np.concatenate(list(it)).tolist())
    assert len(per_rank[0]) == len(per_rank[1]) == 6
    assert set(per_rank[0]) | set(per_rank[1]) == {5, 6, 7, 8, 9}


def test_source_level_sharding_and_num_samples():
    X = np.arange(10)
    ds = ArrayDataSource([X])
    assert ds.num_samples(shard=(0, 3)) == 4
    got = [b[0].tolist() for r in range(2) for b in ds.batch_iterator(5, shuffle=1, shard=(r, 2))]
    assert sorted(sum(got, [])) == list(range(10))
    assert ds.batch_map_concat(lambda x: x, 3, shard=(1, 3))[0].shape == (4,)


def test_weighted_sharding_gives_independent_streams():
    ds = ArrayDataSource([np.arange(50)], sampler=WeightedSampler(np.ones(50)))
    a = next(ds.batch_iterator(8, shuffle=3, shard=(0, 2)))[0]
    b = next(ds.batch_iterator(8, shuffle=3, shard=(1, 2)))[0]
    assert a.tolist() != b.tolist()


@pytest.mark.parametrize("args,match", [((2, 2), "rank"), ((-1, 2), "rank"), ((0, 0), "num_shards"), ((0, 2.0), "num_shards")])
def test_bad_shard(args, match):
    with pytest.raises(ValueError, match=match):
        ShardSpec(*args)


def test_bad_remainder_and_split():
    with pytest.raises(ValueError, match="remainder"):
        ShardSpec(0, 2, remainder="wrap")
    with pytest.raises(ValueError, match="split"):
        ShardSpec(0, 2, split="random")
    with pytest.raises(TypeError, match="shard"):
        StandardSampler(4).in_order_indices_batch_iterator(2, shard="0/2")


def test_shuffle_without_shared_seed_is_rejected():
    with pytest.raises(ValueError, match="seed.*shared across ranks"):
        StandardSampler(10).shuffled_indices_batch_iterator(2, np.random.RandomState(0), shard=(0, 2))
    with pytest.raises(ValueError, match="shared across ranks"):
        ArrayDataSource([np.arange(4)], sampler=WeightedSampler(np.ones(4))).batch_iterator(
            2, shuffle=True, shard=(0, 2))


def test_sharded_resume():
    assert_resumes(lambda: StandardSampler(11, repeats=2).shuffled_indices_batch_iterator(3, 5, shard=(1, 3)))
    # Ranks move in lockstep: a state saved on rank 1 continues rank 2 at the same position.
    saver = StandardSampler(11, repeats=2).shuffled_indices_batch_iterator(3, 5, shard=(1, 3))
    next(saver)
    rank2 = StandardSampler(11, repeats=2).shuffled_indices_batch_iterator(3, 5, shard=(2, 3))
    expected = [b.tolist() for b in rank2][1:]
    fresh = StandardSampler(11, repeats=2).shuffled_indices_batch_iterator(3, 5, shard=(2, 3))
    fresh.load_state_dict(saver.state_dict())
    assert [b.tolist() for b in fresh] == expected


def test_finite_weighted_epochs_are_split_between_ranks():
    from batchup.samplers import WeightedSampler

    w = np.ones(20)
    ds = ArrayDataSource([np.arange(20)], sampler=WeightedSampler(w, num_samples=20, replace=False))
    assert ds.num_samples(shard=(0, 2)) == 10
    ids = [np.concatenate([b[0] for b in ds.batch_iterator(4, shuffle=7, shard=(r, 2))]) for r in range(2)]
    assert len(ids[0]) == len(ids[1]) == 10
    assert sorted(np.concatenate(ids).tolist()) == list(range(20))


def test_balanced_sampler_gets_the_seed_and_is_size_checked():
    from batchup.samplers import BalancedSampler

    y = np.repeat(np.arange(4), 5)
    ds = ArrayDataSource([np.arange(20), y], sampler=BalancedSampler(y, 2, 3))
    it = ds.batch_iterator(6, shuffle=5)
    assert it.state_dict()["inner"]["plan"]["shuffle"] == "seed"
    with pytest.raises(ValueError, match="samples"):
        ArrayDataSource([np.arange(19)], sampler=BalancedSampler(y, 2, 3))


@pytest.mark.parametrize("remainder", ["pad", "drop"])
def test_balanced_batches_are_dealt_out_whole(remainder):
    from batchup.samplers import BalancedSampler

    y = np.repeat(np.arange(5), [7, 3, 9, 4, 6])
    sampler = BalancedSampler(y, 2, 3, repeats=2)
    ds = ArrayDataSource([np.arange(len(y)), y], sampler=sampler)
    full = [b[0].tolist() for b in ds.batch_iterator(6, shuffle=11)]
    ranks = [[b[0].tolist() for b in ds.batch_iterator(6, shuffle=11, shard=ShardSpec(r, 3, remainder))]
             for r in range(3)]
    assert len({len(r) for r in ranks}) == 1
    assert ds.num_samples(shard=ShardSpec(0, 3, remainder)) == 6 * len(ranks[0])
    per_epoch = sampler.batches_per_epoch
    for e in range(2):
        epoch = full[e * per_epoch:(e + 1) * per_epoch]
        got = [b for r in ranks for b in r[e * len(r) // 2:(e + 1) * len(r) // 2]]
        if remainder == "drop":
            assert all(b in epoch for b in got) and len(got) == per_epoch - per_epoch % 3
        else:
            assert sorted(map(tuple, set(map(tuple, got)))) == sorted(set(map(tuple, epoch)))
    for r in ranks:
        for b in r:
            assert len(set(y[b].tolist())) == 2


def test_balanced_sharding_needs_a_shared_seed():
    from batchup.samplers import BalancedSampler

    y = np.repeat(np.arange(4), 5)
    ds = ArrayDataSource([np.arange(20), y], sampler=BalancedSampler(y, 2, 2))
    with pytest.raises(ValueError, match="shared across ranks"):
        ds.batch_iterator(4, shard=(0, 2))
    assert_resumes(lambda: ds.batch_iterator(4, shuffle=3, shard=(1, 2)))
