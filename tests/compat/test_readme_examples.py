"""Every example of BatchUp 0.2's README (batch iteration and gathering), run as a user writes it.

The README's two slips are fixed as a user would: the augmentation example
flips ``batch_X`` (it wrote ``flip_flags``), and the array-like example uses
``int`` and a working image reader instead of Python 2's ``long`` and the
removed ``scipy.misc.imread``.
"""
from __future__ import annotations

import numpy as np
import pytest
import tqdm

from batchup import data_source, sampling

rs = np.random.RandomState(0)
train_X = rs.rand(200, 1, 4, 4).astype(np.float32)
train_y = rs.randint(0, 3, size=200).astype(np.int32)
train_w = rs.rand(200)


def test_quick_example():
    ds = data_source.ArrayDataSource([train_X, train_y])
    n = 0
    for (batch_X, batch_y) in ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345)):
        n += len(batch_X)
    assert n == 200
    for (batch_X, batch_y) in ds.batch_iterator(batch_size=64, shuffle=True):
        assert batch_X.shape[1:] == (1, 4, 4)


def test_subset_by_indices():
    subset_a = np.random.permutation(train_X.shape[0])[:50]
    ds = data_source.ArrayDataSource([train_X, train_y], indices=subset_a)
    seen = []
    for (batch_X, batch_y) in ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345)):
        seen.append(batch_X)
    assert len(np.concatenate(seen)) == 50


def test_augmentation():
    def augment_batch(batch_X, batch_y):
        flip_flags = np.random.binomial(1, 0.5, size=(len(batch_X),)) != 0
        batch_X[flip_flags, ...] = batch_X[flip_flags, :, :, ::-1]
        return batch_X, batch_y

    ds = data_source.ArrayDataSource([train_X, train_y])
    ds = ds.map(augment_batch)
    before = train_X.copy()
    for (batch_X, batch_y) in ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345)):
        assert batch_X.shape == (len(batch_y), 1, 4, 4)
    assert (train_X == before).all(), "augmenting a batch in place must not touch the data"


def test_include_indices():
    ds = data_source.ArrayDataSource([train_X, train_y], include_indices=True)
    for (batch_ndx, batch_X, batch_y) in ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345)):
        assert (train_X[batch_ndx] == batch_X).all()


def test_infinite_and_small_dataset():
    ds = data_source.ArrayDataSource([train_X[:10], train_y[:10]], repeats=-1)
    it = ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(1))
    for _ in range(3):
        batch_X, batch_y = next(it)
        assert len(batch_X) == 64


def test_weighted_and_subset_weighted():
    sampler = sampling.WeightedSampler(weights=train_w)
    ds = data_source.ArrayDataSource([train_X, train_y], sampler=sampler)
    it = ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345))
    batch_X, batch_y = next(it)
    assert len(batch_X) == 64
    subset_a = np.arange(0, 200, 2)
    sampler = sampling.WeightedSubsetSampler(sub_weights=train_w[subset_a], indices=subset_a)
    ds = data_source.ArrayDataSource([train_X, train_y], sampler=sampler, include_indices=True)
    ix, batch_X, batch_y = next(ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345)))
    assert (ix % 2 == 0).all()


def test_class_balancing():
    sampler = sampling.WeightedSampler.class_balancing_sampler(y=train_y, n_classes=train_y.max() + 1)
    ds = data_source.ArrayDataSource([train_X, train_y], sampler=sampler)
    next(ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345)))
    weights = sampling.WeightedSampler.class_balancing_sample_weights(y=train_y, n_classes=train_y.max() + 1)
    weights = weights * 2
    sampler = sampling.WeightedSampler(weights=weights)
    ds = data_source.ArrayDataSource([train_X, train_y], sampler=sampler)
    next(ds.batch_iterator(batch_size=64, shuffle=np.random.RandomState(12345)))


def test_semi_supervised_without_and_with_composite():
    lab_X, lab_y, unlab_X = train_X[:20], train_y[:20], train_X[20:]
    rng = np.random.RandomState(12345)
    ds_lab = data_source.ArrayDataSource([lab_X, lab_y], repeats=-1)
    ds_unlab = data_source.ArrayDataSource([unlab_X])
    lab_iter = ds_lab.batch_iterator(batch_size=64, shuffle=rng)
    manual = []
    for (batch_unlab_X,) in ds_unlab.batch_iterator(batch_size=64, shuffle=rng):
        batch_lab_X, batch_lab_y = next(lab_iter)
        manual.append((batch_lab_X, batch_lab_y, batch_unlab_X))

    ds = data_source.CompositeDataSource([ds_lab, ds_unlab])
    count = 0
    for (batch_lab_X, batch_lab_y, batch_unlab_X) in ds.batch_iterator(batch_size=64, shuffle=rng):
        assert len(batch_lab_X) == len(batch_unlab_X)
        count += 1
    assert count == len(manual) == 3

    ds_struct = data_source.CompositeDataSource([ds_lab, ds_unlab], flatten=False)
    for ((batch_lab_X, batch_lab_y), (batch_unlab_X,)) in ds_struct.batch_iterator(batch_size=64, shuffle=rng):
        assert batch_lab_y.dtype == np.int32


def test_composite_with_shared_rng_matches_manual_loop():
    """Same RandomState, same draws: the composite equals the README's hand-written loop (trimmed)."""
    lab_X, lab_y, unlab_X = train_X[:20], train_y[:20], train_X[20:]
    ds_lab = data_source.ArrayDataSource([lab_X, lab_y], repeats=-1)
    ds_unlab = data_source.ArrayDataSource([unlab_X])
    rng = np.random.RandomState(7)
    lab_iter = ds_lab.batch_iterator(batch_size=64, shuffle=rng)
    unlab_iter = ds_unlab.batch_iterator(batch_size=64, shuffle=rng)
    manual = []
    while True:  # the composite advances its members in order: labelled first
        lx, ly = next(lab_iter)
        try:
            (u,) = next(unlab_iter)
        except StopIteration:
            break
        manual.append((lx[:len(u)], u))
    rng = np.random.RandomState(7)
    auto = list(data_source.CompositeDataSource([ds_lab, ds_unlab]).batch_iterator(64, shuffle=rng))
    for (lx, u), (ax, ay, au) in zip(manual, auto):
        assert (lx == ax).all() and (u == au).all()


class LoadImagesFromDisk:
    """The README's array-like, with its Python 2 / scipy.misc slips fixed."""

    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return np.load(self.paths[index])
        elif isinstance(index, slice):
            images = [np.load(p) for p in self.paths[index]]
            return np.concatenate([img[None, ...] for img in images], axis=0)
        elif isinstance(index, np.ndarray):
            if index.ndim != 1:
                raise ValueError(f"index array should only have 1 dimension, not {index.ndim}")
            images = [np.load(self.paths[i]) for i in index]
            return np.concatenate([img[None, ...] for img in images], axis=0)
        else:
            raise TypeError(f"index should be an integer, a slice or a NumPy array, not a {type(index)}")


def test_array_like_loading_from_disk(tmp_path):
    import os

    paths = []
    for i in range(12):
        p = tmp_path / f"{'dog' if i % 3 == 0 else 'cat'}_{i}.npy"
        np.save(p, np.full((2, 2), i, np.uint8))
        paths.append(str(p))
    train_X = LoadImagesFromDisk(paths)
    train_y = [(1 if os.path.basename(p).startswith("dog") else 0) for p in paths]
    train_y = np.array(train_y, dtype=np.int32)
    ds = data_source.ArrayDataSource([train_X, train_y])
    for (batch_X, batch_y) in ds.batch_iterator(batch_size=5, shuffle=np.random.RandomState(12345)):
        assert ((batch_X[:, 0, 0] % 3 == 0) == (batch_y == 1)).all()


def test_gathering_predictions_and_means():
    test_X = train_X[:100]
    f_pred = lambda batch_X: batch_X.reshape(len(batch_X), -1).sum(axis=1)  # noqa: E731
    test_ds = data_source.ArrayDataSource([test_X])
    (pred_y,) = test_ds.batch_map_concat(f_pred, batch_size=256)
    assert pred_y.shape == (100,)
    (pred_y,) = test_ds.batch_map_concat(f_pred, batch_size=256, progress_iter_func=tqdm.tqdm)

    def f_eval(batch_X, batch_y):
        return [batch_X.sum() * 0 + len(batch_y) * 0.5, (batch_y == 0).sum()]

    val_ds = data_source.ArrayDataSource([train_X, train_y])
    mean_log_loss, mean_err_rate = val_ds.batch_map_mean(f_eval, batch_size=256)
    assert mean_log_loss == pytest.approx(0.5)
    assert mean_err_rate == pytest.approx((train_y == 0).mean())


def test_compat_names_and_isinstance():
    ds = data_source.ArrayDataSource([train_X])
    assert isinstance(ds.map(lambda x: (x,)), data_source.MapDataSource)
    assert isinstance(ds, data_source.RandomAccessDataSource)
    assert isinstance(ds, data_source.AbstractDataSource)
    assert sampling.num_batches(10, 3) == 4
    assert data_source.ChoiceBatch(np.arange(2), 1).ds_index == 1
    for name in ("AbstractSampler", "StandardSampler", "SubsetSampler"):
        assert hasattr(sampling, name)
    with pytest.raises(NotImplementedError):
        sampling.AbstractSampler().in_order_indices_batch_iterator(2)
    with pytest.raises(NotImplementedError):
        sampling.AbstractSampler().shuffled_indices_batch_iterator(2, np.random)
    with pytest.raises(NotImplementedError):
        sampling.AbstractSampler().num_indices_generated()
