"""The smallest reproductions of what the conformance suite found.

An open bug is a strict expected failure naming what is wrong; it starts to
pass (and so fails, being strict) when the bug is fixed, and then the mark
and the matching ``register_known_bug`` entry in ``cases.py`` go. Every
finding so far is fixed, so each stays here as a plain regression test.
"""
from __future__ import annotations

import numpy as np
import pytest

from batchup.samplers import BalancedSampler, ShardSpec, WeightedSampler
from batchup.samplers.plan import SeedRequiredError
from batchup.sources import ArrayDataSource, ChoiceDataSource, CompositeDataSource

pytest_plugins = ["tests.conformance.fixtures"]


def _semi_supervised():
    """The composite CompositeDataSource's docstring recommends: labelled data repeating beside unlabelled."""
    labelled = ArrayDataSource([np.arange(3)], repeats=-1)
    unlabelled = ArrayDataSource([np.arange(10, 15)])
    return CompositeDataSource([labelled, unlabelled])


def test_a_composite_with_an_endless_member_has_a_second_epoch():
    ds = _semi_supervised()
    epoch1 = [b[1].tolist() for b in ds.batch_iterator(2, shuffle=1, epoch=1)]
    assert sorted(sum(epoch1, [])) == [10, 11, 12, 13, 14]


def test_the_semi_supervised_composite_trains_two_keras_epochs():
    from batchup.adapters.keras import as_py_dataset

    pyds = as_py_dataset(_semi_supervised(), 2, shuffle=1)
    for _ in range(2):
        [pyds[i] for i in range(len(pyds))]
        pyds.on_epoch_end()


def test_the_semi_supervised_composite_iterates_two_torch_epochs():
    import torch

    from batchup.adapters.torch import as_iterable_dataset

    dset = as_iterable_dataset(_semi_supervised(), 2, shuffle=1, shard=None)
    for epoch in range(2):
        dset.set_epoch(epoch)
        list(torch.utils.data.DataLoader(dset, batch_size=None))


def test_a_choice_with_an_endless_member_has_a_second_epoch():
    ds = ChoiceDataSource([ArrayDataSource([np.arange(4)], repeats=-1), ArrayDataSource([np.arange(10, 16)])])
    assert len(list(ds.batch_iterator(2, shuffle=1, epoch=1))) > 0


def test_steps_per_epoch_counts_a_finite_weighted_source():
    from batchup.adapters.keras import as_generator, steps_per_epoch

    ds = ArrayDataSource([np.arange(22)], sampler=WeightedSampler(np.ones(22), num_samples=22))
    one_pass = list(as_generator(ds, 5, shuffle=3, epochs=1))
    assert steps_per_epoch(ds, 5) == len(one_pass) == 5


def test_steps_per_epoch_counts_an_unseeded_balanced_shard():
    from batchup.adapters.keras import steps_per_epoch

    labels = np.repeat(np.arange(4), 6)
    ds = ArrayDataSource([np.arange(24), labels], sampler=BalancedSampler(labels, 2, 2))
    shard = ShardSpec(0, 2)
    assert steps_per_epoch(ds, 4, shard=shard) == len(list(ds.batch_iterator(4, shuffle=0, shard=shard)))


def test_steps_per_epoch_of_a_shuffled_choice_is_per_epoch_or_refused():
    """Fixed by design: a non-stratified choice pass ends at the first exhausted member, so its length
    depends on the epoch (4, 4, 4, 5 here); steps_per_epoch counts one epoch when asked and otherwise
    refuses, rather than giving a number that drifts from the passes."""
    from batchup.adapters.keras import as_generator, steps_per_epoch

    ds = ChoiceDataSource([ArrayDataSource([np.arange(22)]), ArrayDataSource([np.arange(9) + 100])])
    gen = as_generator(ds, 5, shuffle=3, epochs=4)
    lengths = [len(list(ds.batch_iterator(5, shuffle=3, epoch=e))) for e in range(4)]
    assert sum(1 for _ in gen) == sum(lengths) and len(set(lengths)) > 1
    assert lengths == [steps_per_epoch(ds, 5, shuffle=3, epoch=e) for e in range(4)]
    with pytest.raises(ValueError, match="changes from epoch to epoch"):
        steps_per_epoch(ds, 5, shuffle=3)


@pytest.mark.parametrize("shuffle", [True, np.random.RandomState(5), np.random.default_rng(5)],
                         ids=["true", "random_state", "generator"])
def test_adapters_refuse_a_seed_per_rank_like_the_core(shuffle):
    """Fixed: with shard over several ranks, shuffle=True or an RNG object gave every rank a seed of its own.

    Each rank builds its adapter, so each drew its own seed and the ranks' parts overlapped
    silently; the core refuses the same arguments with SeedRequiredError.
    """
    from batchup.adapters.keras import as_generator, as_py_dataset
    from batchup.adapters.torch import as_iterable_dataset

    ds = ArrayDataSource([np.arange(22)])
    with pytest.raises(SeedRequiredError, match="int seed shared across ranks"):
        ds.batch_iterator(5, shuffle=shuffle, shard=(0, 2))
    for adapter in (as_py_dataset, as_generator, as_iterable_dataset):
        with pytest.raises(SeedRequiredError, match="int seed shared across ranks"):
            adapter(ds, 5, shuffle=shuffle, shard=(0, 2))
    # One rank (or none) still takes a seed drawn from the object.
    assert len(as_py_dataset(ds, 5, shuffle=shuffle, shard=(0, 1))) == 5


def _refuse_13(x):
    if 13 in x:
        raise RuntimeError("sample 13 is corrupt")
    return (x,)


@pytest.mark.parametrize("kind", ["serial", "inline"])
def test_a_failing_map_delivers_the_batches_before_its_error(kind):
    """Fixed: the serial core gathers several batches of a plain array at once (one np.take); a map
    that failed on a later batch of that group lost the good batches before it, so the serial core
    raised at once where every prefetching driver first delivered batches 0 and 1."""
    ds = ArrayDataSource([np.arange(40)]).map(_refuse_13)
    it = ds.batch_iterator(5) if kind == "serial" else ds.prefetch(0).batch_iterator(5)
    got = []
    with pytest.raises(RuntimeError, match="sample 13"):
        for b in it:
            got.append(b[0].tolist())
    assert got == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_a_choice_shuffled_by_a_random_state_has_a_second_epoch():
    ds = ChoiceDataSource([ArrayDataSource([np.arange(6)]), ArrayDataSource([np.arange(10, 14)])])
    assert len(list(ds.batch_iterator(2, shuffle=np.random.RandomState(0), epoch=1))) > 0


def _short_choice():
    """A non-stratified choice whose passes have 4, 4, 4 and 5 batches with shuffle=3 (epochs 0..3)."""
    return ChoiceDataSource([ArrayDataSource([np.arange(22)]), ArrayDataSource([np.arange(9) + 100])])


def test_torch_len_follows_the_epoch():
    """Fixed: len() of the torch dataset was epoch 0's count after set_epoch(e)."""
    from batchup.adapters.torch import as_iterable_dataset

    ds = _short_choice()
    dset = as_iterable_dataset(ds, 5, shuffle=3, shard=None)
    for e in range(4):
        dset.set_epoch(e)
        assert len(dset) == len(list(ds.batch_iterator(5, shuffle=3, epoch=e)))


def test_every_tf_data_pass_of_a_choice_source_completes():
    pytest.importorskip("tensorflow")
    from batchup.adapters.tf import as_tf_dataset

    ds = _short_choice()
    tds = as_tf_dataset(ds, 5, shuffle=3)
    for e in range(4):
        assert sum(1 for _ in tds) == len(list(ds.batch_iterator(5, shuffle=3, epoch=e)))
