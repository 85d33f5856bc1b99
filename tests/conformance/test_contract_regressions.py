"""Where features meet: one regression test per failure the batch-plan contract fixed.

Each test names the combination that used to give different batches (or
hang, or swallow an argument) depending on which layer drove the pipeline.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from batchup.samplers import AbstractSampler, BalancedSampler, ShardSpec
from batchup.sources import ArrayDataSource, ChoiceDataSource, CompositeDataSource
from tests.helpers import assert_batches_equal, stream


def _augment(x, rng):
    return (x + rng.integers(0, 1000, size=x.shape),)


def _seeded_map_composite():
    X = np.arange(40) * 10
    Y = np.arange(40)
    return CompositeDataSource([ArrayDataSource([X]).map(_augment, seed=1), ArrayDataSource([Y])])


@pytest.mark.parametrize("num_workers,kind", [(0, "thread"), (2, "thread"), (2, "process")])
def test_composite_with_a_seeded_map_member_prefetches_like_serial(num_workers, kind):
    ds = _seeded_map_composite()
    serial = stream(ds.batch_iterator(6, shuffle=3))
    with ds.prefetch(num_workers, kind=kind) as par:
        assert_batches_equal(stream(par.batch_iterator(6, shuffle=3)), serial)


def test_composite_with_a_seeded_map_member_through_keras():
    from batchup.adapters.keras import as_py_dataset

    ds = _seeded_map_composite()
    serial = stream(ds.batch_iterator(6, shuffle=3))
    pyds = as_py_dataset(ds, 6, shuffle=3, structure=(0, 1))
    assert_batches_equal([tuple(pyds[i]) for i in range(len(pyds))], serial)


def test_adapters_epoch_zero_is_the_core_order_for_an_int_seed():
    import torch

    from batchup.adapters.keras import as_py_dataset
    from batchup.adapters.torch import as_iterable_dataset

    ds = ArrayDataSource([np.arange(23), np.arange(23) * 2])
    core = stream(ds.batch_iterator(5, shuffle=7))
    pyds = as_py_dataset(ds, 5, shuffle=7)
    assert_batches_equal([tuple(pyds[i]) for i in range(len(pyds))], core)
    loader = torch.utils.data.DataLoader(as_iterable_dataset(ds, 5, shuffle=7, shard=None), batch_size=None)
    assert_batches_equal([tuple(t.numpy() for t in b) for b in loader], core)


def test_unseeded_balanced_sampler_through_two_torch_workers_covers_every_sample():
    import torch

    from batchup.adapters.torch import as_iterable_dataset

    labels = np.repeat(np.arange(4), 11)  # 44 samples
    ds = ArrayDataSource([np.arange(44), labels], sampler=BalancedSampler(labels, 2, 3))
    loader = torch.utils.data.DataLoader(as_iterable_dataset(ds, 6, shard=None), batch_size=None, num_workers=2)
    seen = torch.cat([b[0] for b in loader]).numpy()
    assert set(seen.tolist()) == set(range(44))
    copy = pickle.loads(pickle.dumps(ds))
    assert_batches_equal(stream(copy.batch_iterator(6)), stream(ds.batch_iterator(6)))


def test_seeded_balanced_sampler_gets_a_new_plan_every_keras_epoch():
    from batchup.adapters.keras import as_py_dataset

    labels = np.repeat(np.arange(4), 6)
    ds = ArrayDataSource([np.arange(24), labels], sampler=BalancedSampler(labels, 2, 2, seed=42))
    pyds = as_py_dataset(ds, 4)
    epochs = []
    for e in range(3):
        epochs.append([pyds[i][0].tolist() for i in range(len(pyds))])
        pyds.on_epoch_end()
        assert epochs[-1] == [b[0].tolist() for b in ds.batch_iterator(4, epoch=e)]
    assert epochs[0] != epochs[1] != epochs[2]


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_steps_per_epoch_is_what_a_dropping_shard_of_balanced_batches_yields(rank):
    from batchup.adapters.keras import steps_per_epoch

    labels = np.repeat(np.arange(4), [7, 5, 6, 4])
    ds = ArrayDataSource([np.arange(22), labels], sampler=BalancedSampler(labels, 2, 3, seed=0))
    shard = ShardSpec(rank, 3, remainder="drop")
    yielded = len(stream(ds.batch_iterator(6, shard=shard)))
    assert steps_per_epoch(ds, 6, shard=shard) == yielded == ds.num_batches(6, shard=shard)


def test_endless_balanced_sampler_with_more_ranks_than_batches_raises_instead_of_looping():
    labels = np.repeat(np.arange(2), 2)
    ds = ArrayDataSource([np.arange(4), labels], sampler=BalancedSampler(labels, 2, 2, repeats=-1, seed=0))
    with pytest.raises(ValueError, match="empty"):
        ds.batch_iterator(4, shard=ShardSpec(2, 3, remainder="drop"))


@pytest.mark.parametrize("call,name", [
    (lambda ds: ds.batch_iterator(5, shufle=1), "shufle"),
    (lambda ds: ds.batch_iterator(5, shards=(1, 2)), "shards"),
    (lambda ds: ds.batch_indices_iterator(5, drop_lst=True), "drop_lst"),
    (lambda ds: ds.num_samples(shufle=1), "shufle"),
    (lambda ds: ds.map(lambda x: (x,)).batch_iterator(5, epochs=1), "epochs"),
    (lambda ds: CompositeDataSource([ds, ds]).batch_iterator(5, shufle=1), "shufle"),
    (lambda ds: ChoiceDataSource([ds, ds]).batch_iterator(5, shufle=1), "shufle"),
    (lambda ds: ds.prefetch(0).batch_iterator(5, shufle=1), "shufle"),
    (lambda ds: ds.prefetch(0, buffer=3), "buffer"),
])
def test_unknown_keyword_arguments_are_errors_that_name_them(call, name):
    with pytest.raises(TypeError, match=name):
        call(ArrayDataSource([np.arange(10)]))


def test_unknown_keyword_arguments_to_the_adapters_are_errors():
    from batchup.adapters.keras import as_generator, as_py_dataset, steps_per_epoch
    from batchup.adapters.torch import as_iterable_dataset

    ds = ArrayDataSource([np.arange(10)])
    for fn in (as_py_dataset, as_generator, as_iterable_dataset, steps_per_epoch):
        with pytest.raises(TypeError, match="shufle"):
            fn(ds, 5, shufle=1)


@pytest.mark.parametrize("bad", ["no", 1, None])
def test_drop_last_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="drop_last"):
        ArrayDataSource([np.arange(10)]).batch_iterator(5, drop_last=bad)


def test_empty_composite_and_choice_are_errors():
    with pytest.raises(ValueError, match="at least one"):
        CompositeDataSource([])
    with pytest.raises(ValueError, match="at least one"):
        ChoiceDataSource([])


class _FailsAtBatch6(AbstractSampler):
    """A BatchUp 0.2-style sampler whose iterator raises while making batch 6."""

    def num_indices_generated(self):
        return 40

    def in_order_indices_batch_iterator(self, batch_size, **kwargs):
        for b in range(40 // batch_size):
            if b == 6:
                raise RuntimeError("sampler broke at batch 6")
            yield np.arange(b * batch_size, (b + 1) * batch_size)


@pytest.mark.parametrize("num_workers,kind", [(None, None), (0, "thread"), (2, "thread"), (2, "process")])
def test_a_sampler_error_arrives_after_the_batches_before_it(num_workers, kind):
    ds = ArrayDataSource([np.arange(40)], sampler=_FailsAtBatch6())
    got = []
    if num_workers is None:
        it = ds.batch_iterator(4)
        with pytest.raises(RuntimeError, match="batch 6"):
            for b in it:
                got.append(b)
    else:
        with ds.prefetch(num_workers, kind=kind) as par:
            with pytest.raises(RuntimeError, match="batch 6"):
                for b in par.batch_iterator(4):
                    got.append(b)
    assert [b[0].tolist() for b in got] == [list(range(4 * k, 4 * k + 4)) for k in range(6)]


def _state_after(it, k):
    for _ in range(k):
        next(it)
    return json.loads(json.dumps(it.state_dict()))


def test_states_that_do_not_fit_are_value_errors_naming_the_field():
    X = np.arange(20)
    ds = ArrayDataSource([X], repeats=2)
    state = _state_after(ds.batch_iterator(4, shuffle=1), 3)
    too_far = json.loads(json.dumps(state))
    too_far["inner"]["position"] = 99  # beyond the last epoch of the run
    with pytest.raises(ValueError, match="position"):
        ds.batch_iterator(4, shuffle=1).load_state_dict(too_far)
    missing = json.loads(json.dumps(state))
    del missing["inner"]["plan"]["seed"]
    with pytest.raises(ValueError, match="seed.*missing|missing.*seed"):
        ds.batch_iterator(4, shuffle=1).load_state_dict(missing)
    with pytest.raises(ValueError, match="seed"):
        ds.batch_iterator(4, shuffle=2).load_state_dict(state)
    with pytest.raises(ValueError, match="repeats"):
        ArrayDataSource([X], repeats=3).batch_iterator(4, shuffle=1).load_state_dict(state)

    sub = ArrayDataSource([X], indices=np.arange(0, 20, 2))
    sub_state = _state_after(sub.batch_iterator(3, shuffle=1), 1)
    with pytest.raises(ValueError, match="indices_crc"):
        ArrayDataSource([X], indices=np.arange(1, 20, 2)).batch_iterator(3, shuffle=1).load_state_dict(sub_state)

    mapped = ArrayDataSource([X]).map(_augment, seed=1)
    map_state = _state_after(mapped.batch_iterator(4), 1)
    with pytest.raises(ValueError, match="map_seed"):
        ArrayDataSource([X]).map(_augment, seed=2).batch_iterator(4).load_state_dict(map_state)

    a, b = ArrayDataSource([X]), ArrayDataSource([X + 100])
    ch_state = _state_after(ChoiceDataSource([a, b]).batch_iterator(4, shuffle=1), 2)
    with pytest.raises(ValueError, match="stratified"):
        ChoiceDataSource([a, b], stratified=True).batch_iterator(4, shuffle=1).load_state_dict(ch_state)


@pytest.mark.parametrize("num_workers,kind", [(0, "thread"), (2, "thread"), (2, "process")])
def test_prefetched_sharded_batches_report_their_padding(num_workers, kind):
    ds = ArrayDataSource([np.arange(10)])
    shard = ShardSpec(2, 3)  # 10 samples over 3 ranks: rank 2 gets one wrap-around duplicate
    serial = ds.batch_iterator(2, shuffle=5, shard=shard)
    want = []
    for _ in serial:
        want.append(serial.last_padding.tolist())
    assert any(any(m) for m in want)
    with ds.prefetch(num_workers, kind=kind) as par:
        it = par.batch_iterator(2, shuffle=5, shard=shard)
        got = []
        for _ in it:
            got.append(it.last_padding.tolist())
    assert got == want
