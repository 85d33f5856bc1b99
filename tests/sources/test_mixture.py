"""MixtureDataSource: sample-level mixing with exact proportions per epoch."""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from batchup.samplers import BalancedSampler, WeightedSampler
from batchup.samplers.plan import SeedRequiredError
from batchup.sources import (
    ArrayDataSource,
    CallableDataSource,
    ChoiceDataSource,
    CompositeDataSource,
    IteratorDataSource,
    MixtureDataSource,
)
from batchup.sources.mixture import MixtureIndices, apportion
from tests.helpers import assert_batches_equal, assert_resumes, stream

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def members(sizes, offset=1000):
    """Members whose column 0 is a unique sample id (member i's ids start at i * offset) and column 1 a float."""
    out = []
    for i, n in enumerate(sizes):
        ids = np.arange(n, dtype=np.int64) + i * offset
        out.append(ArrayDataSource([ids, ids.astype(np.float32) / 2]))
    return out


def corpus():
    """Web text, books and code at 70/20/10 (the guide's example, smaller)."""
    return MixtureDataSource(members([40, 14, 9]), [0.7, 0.2, 0.1])


def ids_of(batches):
    return np.concatenate([b[0] for b in batches]) if batches else np.zeros(0, np.int64)


def _augment(ids, x, rng):
    return (ids, x + rng.normal(size=x.shape).astype(np.float32))


def seeded_map_mixture():
    web, books, code = members([30, 11, 5])
    return MixtureDataSource([web, books.map(_augment, seed=4), code], [7, 2, 1], include_member=True)


# -- the epoch ----------------------------------------------------------------------------------

class TestEpochs:
    def test_the_epoch_ends_when_the_first_member_is_exhausted(self):
        """Web text (40 samples for 0.7) runs out first and is used exactly once; the others in proportion."""
        ds = corpus()
        counts = ds.plan(8).counts.tolist()
        # web: 40 / 0.7 = 57.1, books: 14 / 0.2 = 70, code: 9 / 0.1 = 90 -> web ends the epoch
        assert counts == [40, round(40 * 0.2 / 0.7), round(40 * 0.1 / 0.7)] == [40, 11, 6]
        got = ids_of(stream(ds.batch_iterator(8, shuffle=1)))
        assert sorted(got[got < 1000].tolist()) == list(range(40))
        assert ds.num_samples() == 57 == len(got)

    def test_members_go_on_where_they_stopped_in_the_next_epoch(self):
        ds = corpus()
        e0, e1 = (ids_of(stream(ds.batch_iterator(8, epoch=e))) for e in (0, 1))
        books0, books1 = e0[(e0 >= 1000) & (e0 < 2000)], e1[(e1 >= 1000) & (e1 < 2000)]
        assert books0.tolist() == list(range(1000, 1011))
        assert books1.tolist() == [1011, 1012, 1013] + list(range(1000, 1008))

    def test_epoch_size_upsamples_small_members(self):
        ds = MixtureDataSource(members([40, 14, 9]), [0.7, 0.2, 0.1], epoch_size=200)
        assert ds.plan(10).counts.tolist() == [140, 40, 20]
        got = ids_of(stream(ds.batch_iterator(10, shuffle=3)))
        code = collections.Counter(got[got >= 2000].tolist())
        assert sorted(code.values()) == [2] * 7 + [3] * 2  # 20 of 9: every sample twice, two thrice

    def test_zero_weight_member_is_never_used(self):
        ds = MixtureDataSource(members([10, 10]), [1, 0])
        assert (ids_of(stream(ds.batch_iterator(3, shuffle=2))) < 1000).all()

    def test_endless_member_never_ends_an_epoch(self):
        forever = ArrayDataSource([np.arange(5, dtype=np.int64), np.zeros(5, np.float32)], repeats=-1)
        (finite,) = members([6], offset=0)
        ds = MixtureDataSource([forever, finite], [1, 1])
        assert ds.plan(4).counts.tolist() == [6, 6]
        got = ids_of(stream(ds.batch_iterator(4)))
        assert collections.Counter(got.tolist()) == collections.Counter([0, 1, 2, 3, 4, 0] + list(range(6)))

    def test_repeats_joins_epochs_and_minus_one_is_endless(self):
        ds = MixtureDataSource(members([6, 3]), [2, 1], repeats=2)
        one = MixtureDataSource(members([6, 3]), [2, 1])
        both = ids_of(stream(one.batch_iterator(4, shuffle=5))).tolist() + ids_of(
            stream(one.batch_iterator(4, shuffle=5, epoch=1))).tolist()
        assert ids_of(stream(ds.batch_iterator(4, shuffle=5))).tolist() == both
        forever = MixtureDataSource(members([6, 3]), [2, 1], repeats=-1)
        assert forever.num_batches(4) == np.inf and forever.num_samples() == np.inf
        assert ids_of(stream(forever.batch_iterator(4, shuffle=5), 4)).tolist() == both[:16]

    def test_in_order_interleave_is_smooth(self):
        """Without shuffle every stretch of the epoch has nearly the requested proportions."""
        ds = MixtureDataSource(members([70, 20, 10]), [7, 2, 1], include_member=True)
        member = np.concatenate([b[0] for b in ds.batch_iterator(10)])
        for b in range(10):
            window = np.bincount(member[b * 10:(b + 1) * 10], minlength=3)
            assert np.abs(window - [7, 2, 1]).max() <= 1, window

    def test_apportion_is_exact_and_within_one(self):
        assert apportion([0.7, 0.2, 0.1], 10).tolist() == [7, 2, 1]
        assert apportion([1, 1, 1], 100).tolist() == [34, 33, 33]
        assert apportion([1, 0, 1], 3).tolist() == [2, 0, 1]

    def test_golden_output(self):
        """A fixed seed gives these batches; a change to mixing fails here first."""
        got = [b[0].tolist() for b in stream(corpus().batch_iterator(6, shuffle=11), 2)]
        assert got == GOLDEN


GOLDEN = [[1001, 9, 18, 6, 34, 17], [1000, 2007, 13, 27, 36, 5]]


@st.composite
def mixtures(draw):
    k = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 25), min_size=k, max_size=k))
    weights = draw(st.lists(st.integers(0, 9), min_size=k, max_size=k))
    assume(sum(weights) > 0)
    epoch_size = draw(st.none() | st.integers(1, 80))
    return sizes, weights, epoch_size


def _counts_or_skip(ds):
    try:
        return ds.plan(1).counts
    except ValueError as err:
        assert "no sample" in str(err)
        assume(False)


class TestProportions:
    @SETTINGS
    @given(mixtures(), st.integers(1, 9), st.none() | st.integers(0, 99), st.integers(0, 3))
    def test_every_epoch_has_exactly_the_counts(self, mix, bs, seed, epoch):
        sizes, weights, epoch_size = mix
        ds = MixtureDataSource(members(sizes), weights, epoch_size=epoch_size, include_member=True)
        counts = _counts_or_skip(ds)
        w = np.array(weights, float)
        assert counts.sum() == (epoch_size or counts.sum())
        if epoch_size is not None:
            assert np.abs(counts - epoch_size * w / w.sum()).max() < 1
        batches = stream(ds.batch_iterator(bs, shuffle=seed, epoch=epoch))
        member = np.concatenate([b[0] for b in batches])
        assert np.bincount(member, minlength=len(sizes)).tolist() == counts.tolist()
        assert all((b[1] // 1000 == b[0]).all() for b in batches)  # each row from the member it names

    @SETTINGS
    @given(mixtures(), st.integers(1, 9), st.none() | st.integers(0, 99), st.integers(1, 4))
    def test_member_samples_are_used_in_turn(self, mix, bs, seed, n_epochs):
        """Over n epochs member i uses its stream's first n * counts[i] samples: whole passes, then a part."""
        sizes, weights, epoch_size = mix
        ds = MixtureDataSource(members(sizes), weights, epoch_size=epoch_size)
        counts = _counts_or_skip(ds)
        got = np.concatenate([ids_of(stream(ds.batch_iterator(bs, shuffle=seed, epoch=e))) for e in range(n_epochs)])
        for i, (n, c) in enumerate(zip(sizes, counts)):
            used = collections.Counter((got[got // 1000 == i] % 1000).tolist())
            full, extra = divmod(n_epochs * int(c), n)
            assert sum(used.values()) == n_epochs * c
            assert sorted(used.get(j, 0) for j in range(n)) == [full] * (n - extra) + [full + 1] * extra
            if seed is None:  # in order: exactly the positions 0 .. n*c - 1 of the cyclic stream
                assert used == collections.Counter([p % n for p in range(n_epochs * int(c))])

    @SETTINGS
    @given(mixtures(), st.integers(1, 9), st.integers(1, 9), st.integers(0, 99), st.integers(0, 3))
    def test_order_depends_only_on_seed_and_epoch(self, mix, bs1, bs2, seed, epoch):
        """Fresh sources, any batch size: the same samples in the same order."""
        sizes, weights, epoch_size = mix
        a = MixtureDataSource(members(sizes), weights, epoch_size=epoch_size)
        b = MixtureDataSource(members(sizes), weights, epoch_size=epoch_size)
        _counts_or_skip(a)
        one = ids_of(stream(a.batch_iterator(bs1, shuffle=seed, epoch=epoch)))
        assert one.tolist() == ids_of(stream(b.batch_iterator(bs2, shuffle=seed, epoch=epoch))).tolist()

    @SETTINGS
    @given(mixtures(), st.integers(1, 6), st.integers(0, 99), st.integers(2, 4), st.sampled_from(["pad", "drop"]),
           st.booleans())
    def test_shards_are_disjoint_and_equal(self, mix, bs, seed, n, remainder, drop_last):
        from batchup.samplers import ShardSpec

        sizes, weights, _ = mix
        ds = MixtureDataSource(members(sizes), weights)  # no member repeats inside an epoch
        counts = _counts_or_skip(ds)
        total = int(counts.sum())
        assume(total >= n * (bs if drop_last else 1) + (n if remainder == "drop" else 0))
        whole = ids_of(stream(ds.batch_iterator(bs, shuffle=seed)))
        ranks, real = [], []
        for r in range(n):
            it = ds.batch_iterator(bs, shuffle=seed, shard=ShardSpec(r, n, remainder), drop_last=drop_last)
            batches, pads = [], []
            for batch in it:
                batches.append(batch)
                pads.append(it.last_padding)
            ranks.append([len(b[0]) for b in batches])
            got = ids_of(batches)
            mask = np.concatenate(pads) if pads else np.zeros(0, bool)
            real.append(got[~mask])
        assert all(r == ranks[0] for r in ranks)
        allreal = np.concatenate(real)
        assert len(set(allreal.tolist())) == len(allreal)  # disjoint
        assert set(allreal.tolist()) <= set(whole.tolist())
        if remainder == "pad" and not drop_last:
            assert sorted(allreal.tolist()) == sorted(whole.tolist())  # complete


# -- checkpoints ----------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    dict(shuffle=3),
    dict(shuffle=None, drop_last=True),
    dict(shuffle=3, shard=(1, 3), epoch=2),
    dict(shuffle=3, shard=(2, 3), drop_last=True),
])
def test_resumes_at_every_step(options):
    assert_resumes(lambda: corpus().batch_iterator(5, **options))


def test_resumes_with_a_seeded_map_member_and_an_upsampled_epoch():
    def make():
        web, books, code = members([30, 11, 5])
        return MixtureDataSource([web, books.map(_augment, seed=4), code], [7, 2, 1], epoch_size=50)
    assert_resumes(lambda: make().batch_iterator(7, shuffle=9))


def test_endless_mixture_resumes():
    ds = MixtureDataSource(members([7, 3]), [1, 1], repeats=-1)
    assert_resumes(lambda: ds.batch_iterator(4, shuffle=2), limit=9)


def test_randomstate_draws_one_seed_per_iteration_and_resumes():
    ds = corpus()
    rs = np.random.RandomState(5)
    first, second = (ids_of(stream(ds.batch_iterator(6, shuffle=rs))).tolist() for _ in range(2))
    assert first != second
    assert_resumes(lambda: corpus().batch_iterator(6, shuffle=np.random.RandomState(5)))
    assert_resumes(lambda: corpus().batch_iterator(6, shuffle=np.random.default_rng(5)))
    # The seed drawn is the one the adapters draw: the same batches as that int seed.
    from batchup.adapters._common import resolve_seed

    seed = resolve_seed(np.random.RandomState(5))
    assert ids_of(stream(ds.batch_iterator(6, shuffle=np.random.RandomState(5)))).tolist() == ids_of(
        stream(ds.batch_iterator(6, shuffle=seed))).tolist()


def test_a_drawn_seed_is_taken_from_the_checkpoint():
    """shuffle=True draws a seed; a new process draws another, and restoring takes the saved one."""
    ds = corpus()
    it = ds.batch_iterator(6, shuffle=True)
    head = [next(it) for _ in range(3)]
    state = json.loads(json.dumps(it.state_dict()))
    tail = stream(it)
    resumed = corpus().batch_iterator(6, shuffle=np.random.RandomState(99))
    resumed.load_state_dict(state)
    assert_batches_equal(stream(resumed), tail)
    assert len(head) == 3


def test_counting_draws_no_seed():
    ds = corpus()
    rs = np.random.RandomState(5)
    assert ds.num_batches(6, shuffle=rs) == 10 and ds.num_samples(shuffle=rs) == 57
    assert ids_of(stream(ds.batch_iterator(6, shuffle=rs))).tolist() == ids_of(
        stream(ds.batch_iterator(6, shuffle=np.random.RandomState(5)))).tolist()


def test_balanced_member_with_a_drawn_seed_resumes():
    labels = np.repeat(np.arange(3), 4)
    def make():
        bal = ArrayDataSource([np.arange(12, dtype=np.int64), np.zeros(12, np.float32)],
                              sampler=BalancedSampler(labels, 2, 2))
        return MixtureDataSource([bal, members([5], offset=0)[0]], [2, 1])
    ds = make()
    assert_resumes(lambda: ds.batch_iterator(4))  # the same sampler: the same drawn seed
    it = ds.batch_iterator(4)
    next(it)
    state = json.loads(json.dumps(it.state_dict()))
    again = make().batch_iterator(4)
    again.load_state_dict(state)
    assert_batches_equal(stream(again), stream(ds.batch_iterator(4))[1:])


@pytest.mark.parametrize("other,field", [
    (lambda: MixtureDataSource(members([40, 14, 9]), [0.6, 0.3, 0.1]), "weights"),
    (lambda: MixtureDataSource(members([40, 14, 10]), [0.7, 0.2, 0.1]), "members"),
    (lambda: MixtureDataSource(members([40, 14, 9]), [0.7, 0.2, 0.1], epoch_size=60), "epoch_size"),
])
def test_a_state_from_another_mixture_is_refused_naming_the_field(other, field):
    it = corpus().batch_iterator(5, shuffle=1)
    next(it)
    state = json.loads(json.dumps(it.state_dict()))
    with pytest.raises(ValueError, match=field):
        other().batch_iterator(5, shuffle=1).load_state_dict(state)


def test_equivalent_weights_share_checkpoints():
    it = corpus().batch_iterator(5, shuffle=1)
    next(it)
    state = it.state_dict()
    same = MixtureDataSource(members([40, 14, 9]), [7, 2, 1]).batch_iterator(5, shuffle=1)
    same.load_state_dict(state)
    assert len(same) == len(it)


# -- batches --------------------------------------------------------------------------------------

def test_rows_are_in_the_drawn_order():
    ds = MixtureDataSource(members([12, 6]), [2, 1], include_member=True)
    plan = ds.plan(5, shuffle=4)
    for b in range(len(plan)):
        ix = plan.indices(b)
        assert isinstance(ix, MixtureIndices)
        batch = ds.fetch_batch(ix, plan.batch_number(b))
        assert batch[0].tolist() == ix.member.tolist()
        assert (batch[1] // 1000 == batch[0]).all()
        assert batch[0].dtype == np.int64 and batch[2].dtype == np.float32


def test_composite_members_keep_their_structure():
    def pair(n, off):
        ids = np.arange(n, dtype=np.int64) + off
        return CompositeDataSource([ArrayDataSource([ids]), ArrayDataSource([ids * 10])], flatten=False)
    ds = MixtureDataSource([pair(8, 0), pair(4, 100)], [1, 1])
    got = [((a.tolist(),), (b.tolist(),)) for ((a,), (b,)) in ds.batch_iterator(3)]
    assert got[:2] == [(([0, 100, 1],), ([0, 1000, 10],)), (([101, 2, 102],), ([1010, 20, 1020],))]
    upsampled = MixtureDataSource([pair(8, 0), pair(4, 100)], [1, 1], epoch_size=30)  # 15 of 4: four passes
    rows = [(a, b) for ((a,), (b,)) in upsampled.batch_iterator(7, shuffle=3)]
    small = np.concatenate([a for a, _ in rows])
    assert sorted(collections.Counter(small[small >= 100].tolist()).values()) == [3, 4, 4, 4]
    assert all(len(a) == len(b) for a, b in rows)


def test_batch_indices_iterator_and_counts():
    ds = corpus()
    ix = list(ds.batch_indices_iterator(10, shuffle=1))
    assert len(ix) == ds.num_batches(10) == 6
    assert sum(len(i.member) for i in ix) == ds.num_samples()
    assert ds.num_samples(shard=(0, 2)) == 29


# -- drivers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_workers,kind", [(0, "thread"), (2, "thread"), (2, "process")])
def test_prefetch_gives_the_serial_batches(num_workers, kind):
    ds = seeded_map_mixture()
    for options in (dict(shuffle=3), dict(shuffle=3, shard=(1, 2), drop_last=True, epoch=1)):
        serial = stream(ds.batch_iterator(4, **options))
        with ds.prefetch(num_workers, kind=kind) as par:
            assert_batches_equal(stream(par.batch_iterator(4, **options)), serial)


def test_keras_py_dataset_gives_the_serial_batches():
    from batchup.adapters.keras import as_py_dataset

    ds = seeded_map_mixture()
    pyds = as_py_dataset(ds, 4, shuffle=3, structure=(0, 1, 2))
    for e in range(2):
        assert_batches_equal([tuple(pyds[i]) for i in range(len(pyds))], stream(ds.batch_iterator(4, shuffle=3, epoch=e)))
        pyds.on_epoch_end()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_torch_iterable_dataset_gives_the_serial_batches(num_workers):
    torch = pytest.importorskip("torch")
    from batchup.adapters.torch import as_iterable_dataset

    ds = seeded_map_mixture()
    serial = stream(ds.batch_iterator(4, shuffle=3, shard=(0, 2)))
    tds = as_iterable_dataset(ds, 4, shuffle=3, shard=(0, 2))
    loader = torch.utils.data.DataLoader(tds, batch_size=None, num_workers=num_workers)
    assert_batches_equal([tuple(t.numpy() for t in b) for b in loader], serial)


def test_jax_prefetch_gives_the_serial_batches():
    pytest.importorskip("jax")
    from batchup.adapters.jax import prefetch_to_device

    ds = seeded_map_mixture()
    serial = stream(ds.batch_iterator(4, shuffle=3))
    got = [tuple(np.asarray(x) for x in b) for b in prefetch_to_device(ds.batch_iterator(4, shuffle=3))]
    assert len(got) == len(serial)
    for g, s in zip(got, serial):
        assert all((x == y).all() for x, y in zip(g, s))


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("weights,error,match", [
    ([1, -1], ValueError, r"weights\[1\] is -1"),
    ([1, float("nan")], ValueError, r"weights\[1\] is nan"),
    ([1, float("inf")], ValueError, r"weights\[1\] is inf"),
    ([0, 0], ValueError, "all 0"),
    ([1, 1, 1], ValueError, r"one number per member \(2\), got 3"),
    ([[1, 1]], ValueError, "one number per member"),
    (["a", "b"], TypeError, "real numbers"),
    ("ab", TypeError, "sequence of 2 numbers"),
    (None, TypeError, "sequence of 2 numbers"),
])
def test_bad_weights(weights, error, match):
    with pytest.raises(error, match=match):
        MixtureDataSource(members([3, 3]), weights)


@pytest.mark.parametrize("member,match", [
    (lambda: IteratorDataSource(iter([(np.arange(2),)])), r"datasets\[1\] \(IteratorDataSource\) is not random"),
    (lambda: CallableDataSource(lambda bs, **kw: iter([])), r"datasets\[1\] \(CallableDataSource\) is not random"),
    (lambda: ChoiceDataSource(members([3, 3])), r"datasets\[1\] is a ChoiceDataSource"),
    (lambda: MixtureDataSource(members([3, 3]), [1, 1]), r"datasets\[1\] is a MixtureDataSource"),
    (lambda: np.arange(3), r"datasets\[1\] must be a data source"),
])
def test_members_that_cannot_be_mixed(member, match):
    with pytest.raises(TypeError, match=match):
        MixtureDataSource([members([3])[0], member()], [1, 1])


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(epoch_size=0), ValueError, "epoch_size must be a positive int"),
    (dict(epoch_size=1e6), TypeError, "epoch_size must be an int"),
    (dict(repeats=0), ValueError, "repeats must be >= 1 or -1"),
    (dict(include_member=1), TypeError, "include_member must be True or False"),
])
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        MixtureDataSource(members([3, 3]), [1, 1], **kwargs)


def test_unknown_keyword_arguments_are_errors():
    with pytest.raises(TypeError, match="shufle"):
        corpus().batch_iterator(4, shufle=1)
    with pytest.raises(TypeError, match="epochs"):
        corpus().num_batches(4, epochs=1)


def test_an_epoch_that_starves_a_member_is_refused():
    with pytest.raises(ValueError, match=r"gives member 1 \(ArrayDataSource\) no sample"):
        MixtureDataSource(members([10, 100]), [0.99, 0.01]).batch_iterator(4)
    with pytest.raises(ValueError, match="epoch of 5 samples gives member 2"):
        MixtureDataSource(members([10, 10, 10]), [7, 2, 0.5], epoch_size=5).batch_iterator(4)


def test_an_empty_member_needs_weight_zero():
    empty = ArrayDataSource([np.zeros(0, np.int64), np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match=r"member 1 \(ArrayDataSource\) has no samples but the weight 1"):
        MixtureDataSource([members([4])[0], empty], [1, 1]).batch_iterator(2)
    assert len(stream(MixtureDataSource([members([4])[0], empty], [1, 0]).batch_iterator(2))) == 2


def test_every_member_endless_needs_an_epoch_size():
    forever = [ArrayDataSource([np.arange(4)], repeats=-1) for _ in range(2)]
    with pytest.raises(ValueError, match="pass epoch_size"):
        MixtureDataSource(forever, [1, 1]).batch_iterator(2)
    assert len(stream(MixtureDataSource(forever, [1, 1], epoch_size=6).batch_iterator(2))) == 3


def test_sharding_needs_an_int_seed():
    ds = corpus()
    for shuffle in (True, np.random.RandomState(1), np.random.default_rng(1)):
        with pytest.raises(SeedRequiredError, match="int seed shared across ranks"):
            ds.batch_iterator(4, shuffle=shuffle, shard=(0, 2))
    labels = np.repeat(np.arange(3), 4)
    bal = ArrayDataSource([np.arange(12), np.zeros(12, np.float32)], sampler=BalancedSampler(labels, 2, 2))
    with pytest.raises(SeedRequiredError, match=r"member 0 \(ArrayDataSource\) drew its own seed"):
        MixtureDataSource([bal, members([5])[0]], [1, 1]).batch_iterator(4, shard=(0, 2))
    # With shuffle=<int> the member is shuffled with a seed derived from it instead: allowed.
    assert len(MixtureDataSource([bal, members([5])[0]], [1, 1]).batch_iterator(4, shuffle=1, shard=(0, 2))) == 2


def test_weighted_member_in_order_is_refused_like_its_sampler():
    w = ArrayDataSource([np.arange(6), np.zeros(6, np.float32)], sampler=WeightedSampler(np.ones(6), num_samples=6))
    ds = MixtureDataSource([w, members([6])[0]], [1, 1])
    with pytest.raises(NotImplementedError, match="in-order iteration is not supported"):
        stream(ds.batch_iterator(4))
    assert len(stream(ds.batch_iterator(4, shuffle=1))) == 3


def _as_float64(ids, x):
    return (ids, x.astype(np.float64))


def test_members_with_different_dtypes_are_refused_on_the_first_batch():
    """The odd member has weight 0.05: it is not in batch 0, and still the first batch fails."""
    web, books = members([19, 10])
    ds = MixtureDataSource([web, books.map(_as_float64)], [0.95, 0.05])
    plan = ds.plan(4)
    assert plan.indices(0).parts[1] is None
    with pytest.raises(ValueError, match=r"member 0 \(ArrayDataSource\) gives \(int64\[\], float32\[\]\) but "
                                         r"member 1 \(MapDataSource\) gives \(int64\[\], float64\[\]\)"):
        next(ds.batch_iterator(4))


@pytest.mark.parametrize("fn,match", [
    (lambda ids, x: (ids,), r"gives \(int64\[\]\)"),
    (lambda ids, x: [ids, x], r"gives \[int64\[\], float32\[\]\]"),
    (lambda ids, x: (ids, x[:, None] * np.ones(2, np.float32)), r"float32\[2\]"),
])
def test_members_with_different_structures_are_refused(fn, match):
    web, books = members([6, 6])
    with pytest.raises(ValueError, match=match):
        stream(MixtureDataSource([web, books.map(fn)], [1, 1]).batch_iterator(4))


def test_members_whose_batches_are_not_arrays_are_refused():
    web, books = members([6, 6])
    to_lists = [d.map(lambda ids, x: (ids.tolist(), x)) for d in (web, books)]
    with pytest.raises(TypeError, match=r"member 0 \(MapDataSource\) gives batches of \(\[<int, not an array>, "
                                        r"<int, not an array>\], float32\[\]\); a mixture mixes batches of NumPy"):
        stream(MixtureDataSource(to_lists, [1, 1]).batch_iterator(4))


def test_a_member_that_drops_rows_is_refused():
    web, books = members([6, 6])
    ds = MixtureDataSource([web, books.map(lambda ids, x: (ids[:1], x[:1]))], [1, 1])
    with pytest.raises(ValueError, match=r"member 1 \(MapDataSource\) returned 1 rows for 2 indices"):
        stream(ds.batch_iterator(4))


def test_fetch_batch_needs_mixture_indices():
    with pytest.raises(TypeError, match="indices must be a MixtureIndices"):
        corpus().fetch_batch(np.arange(3), 0)


# -- the guide page -----------------------------------------------------------------------------

_DRIVER = """
import contextlib, io, json, sys
ns = {"__name__": "__main__"}
outputs = []
for i, code in enumerate(json.loads(sys.stdin.read())):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, f"<guide block {i}>", "exec"), ns)
    outputs.append(buf.getvalue())
print(json.dumps(outputs))
"""


def _page_blocks(path):
    lines, blocks, i = path.read_text(encoding="utf-8").splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith(".. code-block:: "):
            kind, body = lines[i].split("::", 1)[1].strip(), []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
                body.append(lines[i])
                i += 1
            blocks.append((kind, textwrap.dedent("\n".join(body)).strip("\n")))
            continue
        i += 1
    return blocks


def test_guide_page_runs_and_prints_what_it_shows(tmp_path):
    blocks = _page_blocks(ROOT / "docs" / "guide" / "36_mixing_datasets.rst")
    code = [text for kind, text in blocks if kind == "python"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(code), capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = iter(json.loads(proc.stdout.splitlines()[-1]))
    checked = 0
    for (kind, _), nxt in zip(blocks, blocks[1:] + [("", "")]):
        if kind == "python":
            printed = next(outputs).rstrip("\n")
            if nxt[0] == "text":
                assert printed == nxt[1], f"block printed:\n{printed}\nthe page shows:\n{nxt[1]}"
                checked += 1
    assert checked >= 5
