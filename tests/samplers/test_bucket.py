"""BucketSampler: once per epoch, budgets, buckets, shards, resume, seeds, and bad input."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchup.samplers import BucketPlan, BucketSampler, ShardSpec
from batchup.samplers._buckets import assign, optimal_edges, round_up
from batchup.samplers.plan import SeedRequiredError
from batchup.sequences import PadToBucket
from batchup.sources import ArrayDataSource
from tests.helpers import assert_resumes


def epochs_of(plan, per_epoch):
    """Split a plan's batches into epochs of ``per_epoch`` batches."""
    batches = [plan.indices(b) for b in range(len(plan))]
    return [batches[i : i + per_epoch] for i in range(0, len(batches), per_epoch)]


@st.composite
def samplers(draw, max_n=60, budget=None):
    """Return ``(lengths, kwargs)`` for a BucketSampler whose samples all fit its budget."""
    n = draw(st.integers(1, max_n))
    lengths = np.array(draw(st.lists(st.integers(1, 40), min_size=n, max_size=n)), dtype=np.int64)
    multiple = draw(st.sampled_from([None, 1, 4, 8]))
    mode = draw(st.sampled_from(["count", "tokens", "both"])) if budget is None else budget
    kwargs: dict = {"pad_to_multiple_of": multiple}
    longest = int(round_up(lengths, multiple).max())
    if mode in ("tokens", "both"):
        kwargs["max_tokens"] = draw(st.integers(longest, 4 * longest + 10))
    if mode in ("count", "both"):
        kwargs["batch_size"] = draw(st.integers(1, 9))
    if draw(st.booleans()):
        kwargs["boundaries"] = sorted(draw(st.sets(st.integers(1, 45), min_size=1, max_size=5)))
    else:
        kwargs["num_buckets"] = draw(st.integers(1, 8))
    return lengths, kwargs


def bucket_of(sampler):
    """Return the bucket of every sample (-1 for samples left out)."""
    out = np.full(sampler.length, -1)
    for k, (start, size) in enumerate(zip(sampler._starts, sampler.bucket_sizes)):
        out[sampler._members[start : start + size]] = k
    return out


def budget_holds(lengths, batch, kwargs):
    padded = int(round_up(lengths[batch], kwargs.get("pad_to_multiple_of")).max())
    if kwargs.get("max_tokens") is not None:
        assert len(batch) * padded <= kwargs["max_tokens"], (batch, padded)
    if kwargs.get("batch_size") is not None:
        assert len(batch) <= kwargs["batch_size"]


# -- one epoch ------------------------------------------------------------------------------------------


@given(samplers(), st.integers(0, 2**32 - 1), st.integers(1, 3), st.sampled_from([None, "seed"]))
def test_every_sample_once_per_epoch_within_budget_and_one_bucket(sample, seed, repeats, shuffle):
    lengths, kwargs = sample
    sampler = BucketSampler(lengths, repeats=repeats, **kwargs)
    plan = sampler.plan(None, shuffle=seed if shuffle else None)
    assert len(plan) == sampler.batches_per_epoch * repeats
    buckets = bucket_of(sampler)
    assert (buckets >= 0).all()
    for epoch in epochs_of(plan, sampler.batches_per_epoch):
        assert sorted(np.concatenate(epoch).tolist()) == list(range(len(lengths)))
        for batch in epoch:
            assert len(batch) > 0
            budget_holds(lengths, batch, kwargs)
            (k,) = set(buckets[batch].tolist())
            assert int(round_up(lengths[batch], kwargs.get("pad_to_multiple_of")).max()) <= sampler.bucket_lengths[k]
            assert len(batch) <= sampler.bucket_batch_sizes[k]
    assert plan.num_samples == len(lengths) * repeats


@given(samplers(), st.integers(0, 2**32 - 1))
def test_only_each_buckets_last_batch_is_short_and_drop_last_leaves_it_out(sample, seed):
    lengths, kwargs = sample
    sampler = BucketSampler(lengths, **kwargs)
    shapes = sampler.batch_shapes()
    buckets = bucket_of(sampler)
    padder = PadToBucket(sampler)
    seen = {}
    for b in sampler.plan(None, shuffle=seed).iterator():
        (k,) = set(buckets[b].tolist())
        assert padder.padded_length(int(lengths[b].max())) == sampler.bucket_lengths[k]
        seen.setdefault(k, []).append(len(b))
        assert (len(b), int(sampler.bucket_lengths[k])) in shapes
    for k, sizes in seen.items():
        full = int(sampler.bucket_batch_sizes[k])
        assert sorted(sizes, reverse=True)[:-1] == [full] * (len(sizes) - 1)
        assert sum(sizes) == sampler.bucket_sizes[k]
    try:
        dropped = sampler.plan(None, shuffle=seed, drop_last=True)
    except ValueError as err:
        assert "no batch at all" in str(err)
        assert all(sampler.bucket_sizes < sampler.bucket_batch_sizes)
        return
    full_shapes = set(sampler.batch_shapes(drop_last=True))
    assert len(full_shapes) == int((sampler.bucket_sizes >= sampler.bucket_batch_sizes).sum())
    for b in dropped.iterator():
        (k,) = set(buckets[b].tolist())
        assert len(b) == sampler.bucket_batch_sizes[k]
        assert (len(b), int(sampler.bucket_lengths[k])) in full_shapes
    assert len(dropped) == int((sampler.bucket_sizes // sampler.bucket_batch_sizes).sum())


def test_buckets_follow_given_boundaries_and_the_longest_forms_one_more():
    lengths = np.array([1, 4, 5, 8, 9, 30, 31, 2])
    sampler = BucketSampler(lengths, batch_size=2, boundaries=[4, 8, 16])
    assert sampler.boundaries.tolist() == [4, 8, 16]
    # (0, 4], (4, 8], (8, 16], and above 16; each padded to its longest sample.
    assert sampler.bucket_lengths.tolist() == [4, 8, 9, 31]
    assert sampler.bucket_sizes.tolist() == [3, 2, 1, 2]
    assert assign(np.array([4, 5, 16, 17]), sampler.boundaries).tolist() == [0, 1, 2, 3]
    # An empty bucket is no bucket.
    assert BucketSampler(lengths, batch_size=2, boundaries=[4, 6, 7, 8]).bucket_lengths.tolist() == [4, 5, 8, 31]


def test_token_budget_counts_padding_rounded_up():
    lengths = np.array([5] * 10 + [9] * 10)
    sampler = BucketSampler(lengths, max_tokens=64, pad_to_multiple_of=8, boundaries=[8])
    assert sampler.bucket_lengths.tolist() == [8, 16]
    assert sampler.bucket_batch_sizes.tolist() == [8, 4]
    both = BucketSampler(lengths, max_tokens=64, batch_size=6, pad_to_multiple_of=8, boundaries=[8])
    assert both.bucket_batch_sizes.tolist() == [6, 4]
    assert both.batch_size is None and BucketSampler(lengths, batch_size=6).batch_size == 6


def test_batches_are_shuffled_within_and_across_buckets():
    lengths = np.repeat([3, 20, 60], 40)
    sampler = BucketSampler(lengths, batch_size=5, boundaries=[10, 30])
    in_order = [b.tolist() for b in sampler.plan(None).iterator()]
    assert in_order == [list(range(i, i + 5)) for i in range(0, 120, 5)]
    shuffled = [b for b in sampler.plan(None, shuffle=3).iterator()]
    buckets = [int(lengths[b[0]]) for b in shuffled]
    assert buckets != sorted(buckets)  # buckets interleave
    assert any(sorted(b.tolist()) != b.tolist() for b in shuffled)  # members are shuffled
    assert sorted(np.concatenate(shuffled).tolist()) == list(range(120))
    firsts = {tuple(sampler.plan(None, shuffle=s).indices(0).tolist()) for s in range(6)}
    assert len(firsts) > 1


# -- seeds and epochs -------------------------------------------------------------------------------------


@given(samplers(max_n=30), st.integers(0, 2**32 - 1), st.integers(0, 3))
@settings(max_examples=30)
def test_order_depends_only_on_seed_and_epoch(sample, seed, epoch):
    lengths, kwargs = sample
    a = BucketSampler(lengths, **kwargs).plan(None, shuffle=seed, epoch=epoch)
    b = BucketSampler(lengths.copy(), **kwargs).plan(None, shuffle=seed, epoch=epoch)
    got = [a.indices(i).tolist() for i in range(len(a))]
    assert got == [b.indices(i).tolist() for i in range(len(b))]
    # Random access in any order gives the same batches.
    assert [a.indices(i).tolist() for i in reversed(range(len(a)))] == got[::-1]
    # Pass `epoch` of a one-epoch run is epoch `epoch` of a longer run.
    long = BucketSampler(lengths, repeats=epoch + 1, **kwargs).plan(None, shuffle=seed)
    per = len(a)
    assert [long.indices(i).tolist() for i in range(epoch * per, (epoch + 1) * per)] == got
    assert a.batch_number(0) == epoch * per


def test_the_samplers_own_seed_and_an_explicit_shuffle():
    lengths = np.arange(1, 41) % 7 + 1
    own = BucketSampler(lengths, batch_size=4, seed=5)
    plain = BucketSampler(lengths, batch_size=4)
    first = [b.tolist() for b in own.plan(None).iterator()]
    assert first == [b.tolist() for b in plain.plan(None, shuffle=5).iterator()]
    assert first == [b.tolist() for b in own.plan(None, shuffle=5).iterator()]
    assert first != [b.tolist() for b in own.plan(None, shuffle=6).iterator()]


@pytest.mark.parametrize("make", [lambda: np.random.RandomState(3), lambda: np.random.default_rng(3)])
def test_rng_objects_pick_a_seed_and_checkpoints_carry_it(make):
    lengths = np.arange(50) % 11 + 1
    ds = ArrayDataSource([np.arange(50)], sampler=BucketSampler(lengths, max_tokens=40))
    first = [x.tolist() for (x,) in ds.batch_iterator(None, shuffle=make())]
    assert first == [x.tolist() for (x,) in ds.batch_iterator(None, shuffle=make())]
    rng = make()
    it = ds.batch_iterator(None, shuffle=rng)
    assert [x.tolist() for (x,) in ds.batch_iterator(None, shuffle=rng)] != first  # the RNG moved on
    next(it)
    state = json.loads(json.dumps(it.state_dict()))
    resumed = ds.batch_iterator(None, shuffle=np.random.RandomState(99))
    resumed.load_state_dict(state)
    assert [x.tolist() for (x,) in resumed] == first[1:]
    with pytest.raises(SeedRequiredError, match="int seed shared across ranks"):
        ds.batch_iterator(None, shuffle=make(), shard=(0, 2))


def test_shuffle_true_draws_from_the_global_rng():
    lengths = np.arange(30) % 5 + 1
    sampler = BucketSampler(lengths, batch_size=4)
    np.random.seed(1)
    a = [b.tolist() for b in sampler.plan(None, shuffle=True).iterator()]
    np.random.seed(1)
    assert a == [b.tolist() for b in sampler.plan(None, shuffle=True).iterator()]


def test_golden_plan():
    """A seeded plan is pinned: a change to bucketing or shuffling must be deliberate."""
    lengths = np.array([7, 3, 12, 5, 3, 9, 14, 2, 6, 11, 4, 8, 13, 1, 10, 5, 3, 12])
    sampler = BucketSampler(lengths, max_tokens=32, pad_to_multiple_of=2)
    assert sampler.boundaries.tolist() == [4, 12, 14]
    assert sampler.bucket_batch_sizes.tolist() == [8, 2, 2]
    plan = sampler.plan(None, shuffle=2024, epoch=1)
    assert [plan.indices(b).tolist() for b in range(len(plan))] == GOLDEN


GOLDEN = [[2, 14], [15, 5], [0, 3], [12, 6], [9, 17], [4, 1, 10, 7, 16, 13], [11, 8]]


# -- sharding ---------------------------------------------------------------------------------------------


@given(samplers(), st.integers(0, 2**32 - 1), st.integers(2, 4), st.sampled_from(["pad", "drop"]), st.booleans())
def test_shards_equal_disjoint_complete_and_in_step(sample, seed, ranks, remainder, drop_last):
    lengths, kwargs = sample
    sampler = BucketSampler(lengths, **kwargs)
    try:
        plans = [sampler.plan(None, shuffle=seed, shard=ShardSpec(r, ranks, remainder), drop_last=drop_last)
                 for r in range(ranks)]
    except ValueError as err:
        assert "no batch at all" in str(err)
        return
    buckets = bucket_of(sampler)
    padder = PadToBucket(sampler)
    counts = {len(p) for p in plans}
    assert len(counts) == 1
    (steps,) = counts
    real = []
    for b in range(steps):
        batches = [p.indices(b) for p in plans]
        pads = [p.padding(b) for p in plans]
        sizes = {len(x) for x in batches}
        assert len(sizes) == 1  # the same batch size on every rank
        ks = {k for x in batches for k in buckets[x].tolist()}
        assert len(ks) == 1  # the same bucket on every rank
        assert len({padder.padded_length(int(lengths[x].max())) for x in batches}) == 1  # so one padded shape
        for x, pad in zip(batches, pads):
            budget_holds(lengths, x, kwargs)
            assert pad.shape == x.shape
            real.extend(x[~pad].tolist())
            if remainder == "drop" or drop_last:
                assert not pad.any()
    assert len(real) == len(set(real))  # disjoint, no sample twice
    if remainder == "pad" and not drop_last:
        assert sorted(real) == list(range(len(lengths)))  # complete
    # num_samples counts this rank's samples (padding included) before drop_last, as for every plan.
    full = sampler.plan(None, shuffle=seed, shard=ShardSpec(0, ranks, remainder))
    assert plans[0].num_samples == full.num_samples == sum(len(full.indices(b)) for b in range(len(full)))


def test_shard_steps_spread_each_bucket_evenly():
    lengths = np.array([2] * 7 + [9] * 3)
    sampler = BucketSampler(lengths, batch_size=3, boundaries=[4])
    plans = [sampler.plan(None, shuffle=0, shard=(r, 2)) for r in range(2)]
    # 7 short samples need 3 batches of 3, so 2 steps: 4 batches of 2, one wrap-around sample;
    # the 3 long samples need 1 batch, so 1 step: 2 batches of 2, one wrap-around sample.
    assert [len(p) for p in plans] == [3, 3]
    for b in range(3):
        x0, x1 = plans[0].indices(b), plans[1].indices(b)
        assert len(x0) == len(x1) == 2 and lengths[x0[0]] == lengths[x1[0]]
    assert sum(int(p.padding(b).sum()) for p in plans for b in range(3)) == 2
    assert sorted(i for p in plans for b in range(3) for i in p.indices(b)[~p.padding(b)]) == list(range(10))
    assert sampler.batch_shapes(shard=(0, 2)) == [(2, 2), (2, 9)]
    dropped = [sampler.plan(None, shuffle=0, shard=ShardSpec(r, 2, "drop")) for r in range(2)]
    got = [i for p in dropped for b in range(len(p)) for i in p.indices(b)]
    # Short bucket: 1 step of two full batches (6 samples) beats 2 steps of 1 sample per batch (4).
    # Long bucket: 1 step of 2 batches of 1 (2 samples) beats no step at all.
    assert len(got) == len(set(got)) == 6 + 2


@given(st.integers(1, 200), st.integers(1, 20), st.integers(2, 8))
def test_drop_leaves_out_the_fewest_samples(m, limit, ranks):
    from batchup.samplers.bucket_plan import _deal

    steps, per = _deal(np.array([m]), np.array([limit]), ranks, False, "drop")
    used = int(steps[0] * ranks * per[0])
    batches = -(-m // limit)
    fewest = -(-batches // ranks)  # the fewest whole steps that would hold the bucket
    assert per[0] <= limit and steps[0] in (fewest - 1, fewest)
    # No choice of those steps keeps more, and fewer than one sample per batch is left out.
    assert used == max(g * ranks * min(limit, m // (g * ranks)) for g in (fewest - 1, fewest) if g > 0)
    assert m - used < fewest * ranks


def test_sharding_repeats_fewer_than_one_sample_per_batch():
    lengths = np.random.default_rng(3).integers(1, 50, 1000)
    sampler = BucketSampler(lengths, max_tokens=400, num_buckets=6)
    for ranks in (2, 3, 8):
        plans = [sampler.plan(None, shuffle=1, shard=(r, ranks)) for r in range(ranks)]
        batches = sum(len(p) for p in plans)
        repeats = sum(int(p.padding(b).sum()) for p in plans for b in range(len(p)))
        assert repeats < batches


def test_impossible_shards_and_no_batches_raise():
    sampler = BucketSampler([3, 3, 3, 9], batch_size=2, boundaries=[4])
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, num_shards=2\)"):
        sampler.plan(None, shard=(2, 2))
    with pytest.raises(ValueError, match="no batch at all on a rank .*remainder='drop'"):
        BucketSampler([3, 9], batch_size=2, boundaries=[4]).plan(None, shuffle=1, shard=ShardSpec(0, 3, "drop"))
    with pytest.raises(ValueError, match="drop_last=True leaves out each bucket's short batch"):
        BucketSampler([3, 9], batch_size=2, boundaries=[4]).plan(None, drop_last=True)
    with pytest.raises(SeedRequiredError, match="int seed shared across ranks"):
        sampler.plan(None, shuffle=True, shard=(0, 2))


# -- resume and sources ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"shuffle": 4}, {"shuffle": 4, "epoch": 2},
                                     {"shuffle": 4, "shard": (1, 3)}, {"shuffle": 4, "drop_last": True}])
def test_resume_at_every_step(options):
    lengths = np.random.default_rng(0).integers(1, 30, 70)
    sampler = BucketSampler(lengths, max_tokens=60, num_buckets=5, repeats=2)
    ds = ArrayDataSource([np.arange(70), lengths], sampler=sampler)
    reference = assert_resumes(lambda: ds.batch_iterator(None, **options))
    assert len(reference) == len(ds.batch_iterator(None, **options))


def test_endless_runs_repeat_epochs():
    lengths = np.arange(20) % 6 + 1
    sampler = BucketSampler(lengths, batch_size=3, repeats=-1)
    plan = sampler.plan(None, shuffle=8)
    assert plan.num_batches is None and plan.num_samples == np.inf and sampler.num_indices_generated() == np.inf
    per = sampler.batches_per_epoch
    batches = [plan.indices(b) for b in range(3 * per)]
    for e in range(3):
        assert sorted(np.concatenate(batches[e * per : (e + 1) * per]).tolist()) == list(range(20))
    assert_resumes(lambda: ArrayDataSource([lengths], sampler=sampler).batch_iterator(None, shuffle=8), limit=12)


def test_source_counts_and_batch_size_argument():
    lengths = np.array([3, 9, 4, 10, 3, 8, 2, 9])
    ds = ArrayDataSource([lengths], sampler=BucketSampler(lengths, max_tokens=20, boundaries=[4]))
    assert ds.num_batches(None) == 3 and ds.num_samples() == 8
    assert ds.num_batches(None, shuffle=1, shard=(0, 2)) == 2
    with pytest.raises(ValueError, match=r"sets the batch size itself \(max_tokens=20\), so batch_size must be None"):
        ds.batch_iterator(4)
    counted = ArrayDataSource([lengths], sampler=BucketSampler(lengths, batch_size=3))
    assert len(counted.batch_iterator(3)) == len(counted.batch_iterator(None))
    with pytest.raises(ValueError, match=r"batch_size must be None or 3; got batch_size=4"):
        counted.batch_iterator(4)


def test_a_sampler_sized_for_other_data_is_refused():
    with pytest.raises(ValueError, match="sized for 3 samples but the data has 4"):
        ArrayDataSource([np.arange(4)], sampler=BucketSampler([1, 2, 3], batch_size=2))


# -- automatic buckets ------------------------------------------------------------------------------------


def brute_force_cost(rounded, num_buckets, sizes_of):
    vals = np.unique(rounded)
    best = np.inf
    for k in range(1, min(num_buckets, len(vals)) + 1):
        for inner in itertools.combinations(vals[:-1].tolist(), k - 1):
            edges = np.array(sorted(inner) + [int(vals[-1])])
            best = min(best, padded_size(rounded, edges, sizes_of))
    return best


def padded_size(rounded, edges, sizes_of):
    which = assign(rounded, edges)
    total = 0
    for k in np.unique(which):
        members = rounded[which == k]
        p = int(members.max())
        size = int(sizes_of(np.array([p]))[0])
        total += -(-len(members) // size) * size * p
    return total


@given(st.lists(st.integers(1, 24), min_size=1, max_size=30), st.integers(1, 5), st.integers(24, 100))
@settings(max_examples=40)
def test_automatic_boundaries_are_optimal(lengths, num_buckets, budget):
    rounded = np.array(lengths, dtype=np.int64)

    def sizes_of(p):
        return budget // p

    edges = optimal_edges(rounded, num_buckets, sizes_of)
    assert len(edges) <= num_buckets and edges[-1] == rounded.max()
    assert np.all(np.diff(edges) > 0) and set(edges.tolist()) <= set(lengths)
    assert padded_size(rounded, edges, sizes_of) == brute_force_cost(rounded, num_buckets, sizes_of)


def test_automatic_boundaries_on_many_distinct_lengths_use_quantiles():
    lengths = np.random.default_rng(1).integers(1, 5000, 20_000)
    sampler = BucketSampler(lengths, max_tokens=10_000, num_buckets=16)
    assert len(sampler.boundaries) <= 16 and sampler.boundaries[-1] == lengths.max()
    assert set(sampler.boundaries.tolist()) <= set(lengths.tolist())


def test_small_data_gets_few_buckets_and_large_data_many():
    rng = np.random.default_rng(2)
    small = np.clip(np.rint(rng.lognormal(np.log(60), 0.8, 300)), 1, 1024).astype(int)
    large = np.clip(np.rint(rng.lognormal(np.log(60), 0.8, 30_000)), 1, 1024).astype(int)
    few = BucketSampler(small, max_tokens=4096)
    many = BucketSampler(large, max_tokens=4096)
    assert len(few.bucket_sizes) < len(many.bucket_sizes) <= 64
    real = large.sum()
    padded = sum(len(b) * large[b].max() for b in many.plan(None, shuffle=0).iterator())
    assert real / padded > 0.95


# -- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    ({"lengths": [3, 0, 2], "batch_size": 2}, ValueError, r"lengths\[1\] is 0, but every sample needs a length >= 1"),
    ({"lengths": [3, -2], "batch_size": 2}, ValueError, r"lengths\[1\] is -2"),
    ({"lengths": [[1, 2]], "batch_size": 2}, ValueError, "1-D array of sample lengths, got an array of shape"),
    ({"lengths": [1.5, 2.0], "batch_size": 2}, TypeError, "lengths must be integers, got dtype float64"),
    ({"lengths": [3, 4]}, ValueError, "needs batch_size .* or max_tokens"),
    ({"lengths": [3, 4], "batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
    ({"lengths": [3, 4], "max_tokens": 2.5}, TypeError, "max_tokens must be an int, got 2.5"),
    ({"lengths": [3, 40, 4, 50], "max_tokens": 32}, ValueError,
     r"sample 1 has length 40, more than max_tokens=32: no batch can hold it \(1 more sample too\); "
     "raise max_tokens, or pass drop_oversized=True"),
    ({"lengths": [3, 30], "max_tokens": 31, "pad_to_multiple_of": 8}, ValueError,
     r"sample 1 has length 30 \(32 rounded up to pad_to_multiple_of=8\), more than max_tokens=31"),
    ({"lengths": [3, 4], "batch_size": 2, "boundaries": [4, 4]}, ValueError,
     r"strictly increasing, but boundaries\[1\]=4 follows boundaries\[0\]=4"),
    ({"lengths": [3, 4], "batch_size": 2, "boundaries": [8, 2]}, ValueError, r"boundaries\[1\]=2 follows"),
    ({"lengths": [3, 4], "batch_size": 2, "boundaries": []}, ValueError, "non-empty 1-D list of increasing"),
    ({"lengths": [3, 4], "batch_size": 2, "boundaries": [0, 4]}, ValueError, r"positive, got boundaries\[0\]=0"),
    ({"lengths": [3, 4], "batch_size": 2, "boundaries": [2.5]}, TypeError, "boundaries must be integers"),
    ({"lengths": [3, 4], "batch_size": 2, "drop_oversized": True}, ValueError, "drop_oversized=True needs max_tokens"),
    ({"lengths": [3, 4], "max_tokens": 9, "drop_oversized": "yes"}, TypeError, "drop_oversized must be True or False"),
    ({"lengths": [3, 4], "batch_size": 2, "repeats": 0}, ValueError, "repeats must be >= 1 or -1"),
    ({"lengths": [3, 4], "batch_size": 2, "seed": 1.0}, TypeError, "seed must be None or an int"),
    ({"lengths": [3, 4], "batch_size": 2, "num_buckets": 0}, ValueError, "num_buckets must be a positive int"),
    ({"lengths": [3, 4], "batch_size": 2, "pad_to_multiple_of": -8}, ValueError, "pad_to_multiple_of must be a positive"),
])
def test_bad_input_is_named(kwargs, error, match):
    lengths = kwargs.pop("lengths")
    with pytest.raises(error, match=match):
        BucketSampler(lengths, **kwargs)


def test_unknown_keyword_and_positional_options_are_refused():
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_token'"):
        BucketSampler([1, 2], max_token=5)
    with pytest.raises(TypeError, match="positional argument"):
        BucketSampler([1, 2], 5)


def test_drop_oversized_leaves_samples_out_and_counts_them():
    lengths = np.array([3, 40, 4, 50, 5])
    sampler = BucketSampler(lengths, max_tokens=32, drop_oversized=True)
    assert sampler.dropped.tolist() == [1, 3]
    assert sampler.num_indices_generated() == 3 and "2 dropped" in repr(sampler)
    got = sorted(np.concatenate(list(sampler.plan(None, shuffle=1).iterator())).tolist())
    assert got == [0, 2, 4]


def test_a_ragged_array_stands_for_its_lengths():
    from batchup.sequences import RaggedArray

    ra = RaggedArray.from_list([[1, 2], [3], [4, 5, 6]])
    assert BucketSampler(ra, batch_size=2).bucket_sizes.sum() == 3


def test_plan_is_a_bucket_plan_with_a_fingerprint():
    sampler = BucketSampler([3, 9, 4, 10], max_tokens=20, boundaries=[4])
    plan = sampler.plan(None, shuffle=1)
    assert isinstance(plan, BucketPlan) and plan.batch_size is None
    fp = plan.fingerprint()
    assert fp["sampler"] == "bucket" and fp["max_tokens"] == 20 and json.loads(json.dumps(fp)) == fp
    other = BucketSampler([3, 9, 4, 11], max_tokens=20, boundaries=[4]).plan(None, shuffle=1)
    assert other.fingerprint()["layout_crc"] != fp["layout_crc"]
