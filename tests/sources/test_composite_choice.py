"""CompositeDataSource and ChoiceDataSource."""
from __future__ import annotations

import numpy as np
import pytest

from batchup.sources import (
    ArrayDataSource,
    CallableDataSource,
    ChoiceBatch,
    ChoiceDataSource,
    CompositeDataSource,
    IteratorDataSource,
)
from batchup.sources.choice import stratified_schedule
from tests.helpers import assert_resumes


def lab_unlab():
    lab = ArrayDataSource([np.arange(5), np.arange(5) + 100], repeats=-1)
    unlab = ArrayDataSource([np.arange(1000, 1013)])
    return lab, unlab


def test_semi_supervised_epoch_follows_the_finite_member():
    lab, unlab = lab_unlab()
    ds = CompositeDataSource([lab, unlab])
    batches = list(ds.batch_iterator(4, shuffle=3))
    assert [len(b[2]) for b in batches] == [4, 4, 4, 1]
    assert all(len(b[0]) == len(b[2]) for b in batches)  # trimmed
    assert sorted(np.concatenate([b[2] for b in batches]).tolist()) == list(range(1000, 1013))
    assert ds.num_samples() == 13


def test_structure_flatten_false_and_nesting():
    lab, unlab = lab_unlab()
    inner = CompositeDataSource([lab, unlab], flatten=False)
    (a, b), (c,) = next(inner.batch_iterator(2))
    outer = CompositeDataSource([inner, ArrayDataSource([np.arange(13)])])
    batch = next(outer.batch_iterator(2))
    assert len(batch) == 3 and isinstance(batch[0], tuple)


def test_trim_false_keeps_lengths():
    lab, unlab = lab_unlab()
    last = list(CompositeDataSource([lab, unlab], trim=False).batch_iterator(4))[-1]
    assert len(last[0]) == 4 and len(last[2]) == 1


def test_shared_randomstate_drawn_in_member_order():
    """Member 0's permutation, then member 1's, from the same RandomState (BatchUp 0.2)."""
    a = ArrayDataSource([np.arange(6)])
    b = ArrayDataSource([np.arange(6)])
    got = next(CompositeDataSource([a, b]).batch_iterator(6, shuffle=np.random.RandomState(8)))
    ref = np.random.RandomState(8)
    assert got[0].tolist() == ref.permutation(6).tolist()
    assert got[1].tolist() == ref.permutation(6).tolist()


def test_int_seed_shuffles_members_independently():
    a = ArrayDataSource([np.arange(50)])
    got = next(CompositeDataSource([a, a]).batch_iterator(50, shuffle=8))
    assert got[0].tolist() != got[1].tolist()


def test_indices_iterator_and_samples_by_indices():
    lab, unlab = lab_unlab()
    ds = CompositeDataSource([lab, unlab])
    for ix in ds.batch_indices_iterator(4, shuffle=1):
        assert isinstance(ix, tuple) and len(ix) == 2 and len(ix[0]) == len(ix[1])
        batch = ds.samples_by_indices_nomapping(ix)
        assert (batch[1] == batch[0] + 100).all()
    with pytest.raises(ValueError, match="one entry per member"):
        ds.samples_by_indices((np.array([0]),))


def test_list_batches_from_map_are_flattened_and_trimmed():
    lab, unlab = lab_unlab()
    mapped = lab.map(lambda x, y: [x, y])
    batches = list(CompositeDataSource([mapped, unlab]).batch_iterator(4))
    assert len(batches[-1]) == 3 and len(batches[-1][0]) == 1


def test_num_samples_ignores_unknown_members():
    it_src = IteratorDataSource(iter([]))
    assert CompositeDataSource([it_src]).num_samples() is None
    assert CompositeDataSource([it_src, ArrayDataSource([np.arange(3)])]).num_samples() == 3


def test_not_random_access_errors():
    ds = CompositeDataSource([CallableDataSource(lambda bs, **kw: iter([]))])
    assert not ds.is_random_access
    with pytest.raises(TypeError, match="random access"):
        ds.batch_indices_iterator(2)
    with pytest.raises(TypeError, match="random access"):
        ds.samples_by_indices([np.array([0])])


def test_choice_round_robin_stops_at_first_exhausted():
    a = ArrayDataSource([np.arange(6)])
    b = ArrayDataSource([np.arange(100, 104)])
    got = [x.tolist() for (x,) in ChoiceDataSource([a, b]).batch_iterator(2)]
    assert got == [[0, 1], [100, 101], [2, 3], [102, 103], [4, 5]]


def test_choice_shuffled_rounds_use_permutation_per_round():
    a = ArrayDataSource([np.arange(4)])
    b = ArrayDataSource([np.arange(100, 104)])
    rng = np.random.RandomState(1)
    got = list(ChoiceDataSource([a, b]).batch_indices_iterator(2, shuffle=rng))
    ref = np.random.RandomState(1)
    order = ref.permutation(2)
    assert [cb.ds_index for cb in got[:2]] == order.tolist()


def test_choice_stratified_uses_every_batch():
    a = ArrayDataSource([np.arange(8)])
    b = ArrayDataSource([np.arange(100, 102)])
    for shuffle in (None, 5, np.random.RandomState(0)):
        got = list(ChoiceDataSource([a, b], stratified=True).batch_indices_iterator(2, shuffle=shuffle))
        assert sorted(cb.ds_index for cb in got) == [0, 0, 0, 0, 1]
    assert stratified_schedule([4, 1]).tolist() == [0, 1, 0, 0, 0]


def test_choice_batch_is_namedtuple_and_samples_by_indices():
    a = ArrayDataSource([np.arange(8) * 10])
    ds = ChoiceDataSource([a, a])
    cb = ChoiceBatch(np.array([1, 2]), 1)
    assert cb == (cb.sample_indices, 1)
    assert ds.samples_by_indices(cb)[0].tolist() == [10, 20]
    with pytest.raises(TypeError, match="ChoiceBatch"):
        ds.samples_by_indices((np.array([1]), 0))
    assert ds.num_samples() == 16


def test_choice_inside_composite_index_trim():
    a = ArrayDataSource([np.arange(5)])
    choice = ChoiceDataSource([a, a])
    comp = CompositeDataSource([choice, ArrayDataSource([np.arange(3)])])
    batches = list(comp.batch_indices_iterator(2))
    assert isinstance(batches[-1][0], ChoiceBatch) and len(batches[-1][0].sample_indices) == 1


def test_choice_empty_and_bad_members():
    with pytest.raises(ValueError, match="at least one"):
        ChoiceDataSource([])
    with pytest.raises(TypeError, match=r"datasets\[0\]"):
        ChoiceDataSource([np.arange(3)])


@pytest.mark.parametrize("make", [
    lambda: CompositeDataSource(list(lab_unlab())).batch_iterator(3, shuffle=4),
    lambda: CompositeDataSource(list(lab_unlab())).batch_iterator(3, shuffle=np.random.RandomState(4)),
    lambda: ChoiceDataSource(list(lab_unlab())).batch_iterator(3, shuffle=np.random.RandomState(2)),
    lambda: ChoiceDataSource([ArrayDataSource([np.arange(9)]), ArrayDataSource([np.arange(5)])],
                             stratified=True).batch_iterator(2, shuffle=np.random.RandomState(2)),
    lambda: ChoiceDataSource([ArrayDataSource([np.arange(9)]), ArrayDataSource([np.arange(5)])],
                             stratified=True).batch_iterator(2, shuffle=9),
    lambda: ChoiceDataSource([ArrayDataSource([np.arange(9)]), ArrayDataSource([np.arange(5)]),
                              ArrayDataSource([np.arange(7)])]).batch_iterator(2, shuffle=9),
])
def test_resume(make):
    assert_resumes(make)
