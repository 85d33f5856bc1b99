"""BucketSampler and RaggedArray through every driver: each yields the serial core's batches.

The reference is ``ds.batch_iterator(None, shuffle=SEED, epoch=e)`` over a
ragged corpus; worker pools, Keras, torch and JAX must give the same batches
in the same order, with the length the plan says for every epoch. A
jitted JAX step compiles once per shape in ``sampler.batch_shapes()``, no more.
"""
from __future__ import annotations

import numpy as np
import pytest

from batchup.sequences import BucketSampler, PadToBucket, RaggedArray
from batchup.sources import ArrayDataSource
from tests.helpers import assert_batches_equal, assert_resumes, stream

SEED = 7


def corpus(n=300, seed=0, feat=()):
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(12), 0.7, n)), 1, 80).astype(np.int64)
    values = rng.integers(1, 1000, (int(lengths.sum()),) + feat).astype(np.int32)
    return RaggedArray.from_lengths(values, lengths)


def padded_source(ra, sampler, **pad):
    """The source of the guide: ``(tokens, lengths, [mask,] label)`` per batch, padded to the bucket."""
    y = np.arange(len(ra), dtype=np.int64)
    return ArrayDataSource([ra, y], sampler=sampler).map(PadToBucket(sampler, **pad))


def check_padded(batches, ra, sampler):
    """Every batch holds its samples padded to its bucket's length, in the plan's shapes."""
    shapes = set(sampler.batch_shapes())
    for x, lengths, y in batches:
        assert (x.shape[0], x.shape[1]) in shapes
        for row, n, i in zip(x, lengths, y):
            assert n == len(ra[i]) and np.array_equal(row[:n], ra[i]) and not row[n:].any()


@pytest.fixture(scope="module")
def ra():
    return corpus()


@pytest.fixture(scope="module")
def sampler(ra):
    return BucketSampler(ra.lengths, max_tokens=256, pad_to_multiple_of=8, num_buckets=6)


def test_ragged_batches_are_the_samples_of_the_plan(ra, sampler):
    ds = ArrayDataSource([ra, np.arange(len(ra))], sampler=sampler)
    plan = ds.plan(None, shuffle=SEED)
    batches = stream(ds.batch_iterator(None, shuffle=SEED))
    assert len(batches) == len(plan) == sampler.batches_per_epoch
    for b, (x, y) in enumerate(batches):
        assert isinstance(x, RaggedArray) and np.array_equal(y, plan.indices(b))
        assert all(np.array_equal(x[j], ra[i]) for j, i in enumerate(y))
    check_padded(stream(padded_source(ra, sampler).batch_iterator(None, shuffle=SEED)), ra, sampler)


def test_resume_through_a_padding_map(ra, sampler):
    ds = padded_source(ra, sampler)
    assert_resumes(lambda: ds.batch_iterator(None, shuffle=SEED, epoch=1), every=3)


@pytest.mark.parametrize("kind, start_method", [("thread", None), ("process", "fork"), ("process", "spawn")])
def test_prefetch_equals_the_serial_core(ra, sampler, kind, start_method):
    ds = padded_source(ra, sampler, return_mask=True)
    for epoch in (0, 1):
        want = stream(ds.batch_iterator(None, shuffle=SEED, epoch=epoch))
        with ds.prefetch(2, kind=kind, start_method=start_method, timeout=120) as par:
            got = stream(par.batch_iterator(None, shuffle=SEED, epoch=epoch))
        assert_batches_equal(got, want)


def test_prefetch_of_ragged_batches_and_resume(ra, sampler):
    ds = ArrayDataSource([ra, np.arange(len(ra))], sampler=sampler)
    want = stream(ds.batch_iterator(None, shuffle=SEED))
    with ds.prefetch(2, kind="process", timeout=120) as par:
        got = stream(par.batch_iterator(None, shuffle=SEED))
        assert len(got) == len(want)
        for (gx, gy), (wx, wy) in zip(got, want):
            assert np.array_equal(gy, wy) and np.array_equal(gx.values, wx.values)
            assert np.array_equal(gx.offsets, wx.offsets)
    with padded_source(ra, sampler).prefetch(2, kind="thread", timeout=120) as par:
        assert_resumes(lambda: par.batch_iterator(None, shuffle=SEED), every=4)


def test_shards_pad_to_one_shape_per_step(ra, sampler):
    ds = padded_source(ra, sampler)
    ranks = [stream(ds.batch_iterator(None, shuffle=SEED, shard=(r, 3))) for r in range(3)]
    assert len({len(r) for r in ranks}) == 1
    for step in zip(*ranks):
        assert len({x.shape for x, _, _ in step}) == 1
    real = np.concatenate([y for r in ranks for _, _, y in r])
    assert set(real.tolist()) == set(range(len(ra)))


# -- frameworks -------------------------------------------------------------------------------------------


def test_keras_py_dataset_has_each_epochs_length_and_batches(ra):
    keras_adapter = pytest.importorskip("batchup.adapters.keras")
    pytest.importorskip("keras")
    sampler = BucketSampler(ra.lengths, max_tokens=300, num_buckets=5)
    ds = padded_source(ra, sampler)
    pyds = keras_adapter.as_py_dataset(ds, None, shuffle=SEED, structure=(0, 2))
    for epoch in (0, 1):
        want = stream(ds.batch_iterator(None, shuffle=SEED, epoch=epoch))
        assert len(pyds) == len(want) == sampler.batches_per_epoch
        got = [pyds[i] for i in range(len(pyds))]
        assert_batches_equal(got, [(x, y) for x, _, y in want])
        pyds.on_epoch_end()
        assert pyds.epoch == epoch + 1


def test_keras_trains_on_bucketed_batches(ra):
    keras = pytest.importorskip("keras")
    from batchup.adapters.keras import as_py_dataset

    sampler = BucketSampler(ra.lengths, max_tokens=512, pad_to_multiple_of=16, num_buckets=3)
    labels = (ra.lengths > 12).astype(np.float32)
    ds = ArrayDataSource([ra, labels], sampler=sampler).map(PadToBucket(sampler, return_mask=True))
    inputs = keras.Input(shape=(None,), dtype="int32")
    h = keras.layers.Embedding(1000, 8, mask_zero=True)(inputs)
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model(inputs, out)
    model.compile("adam", "binary_crossentropy")
    history = model.fit(as_py_dataset(ds, None, shuffle=SEED, structure=(0, 3)), epochs=2, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 2


def test_torch_dataloader_with_two_workers(ra, sampler):
    torch = pytest.importorskip("torch")
    from batchup.adapters.torch import as_iterable_dataset

    ds = padded_source(ra, sampler)
    tds = as_iterable_dataset(ds, None, shuffle=SEED)
    loader = torch.utils.data.DataLoader(tds, batch_size=None, num_workers=2)
    assert len(loader) == sampler.batches_per_epoch
    for epoch in (0, 1):
        tds.set_epoch(epoch)
        got = [tuple(t.numpy() for t in batch) for batch in loader]
        assert_batches_equal(got, stream(ds.batch_iterator(None, shuffle=SEED, epoch=epoch)))


def test_jax_prefetch_to_device_and_a_bounded_number_of_compiled_shapes(ra, sampler):
    jax = pytest.importorskip("jax")
    from batchup.adapters.jax import prefetch_to_device

    ds = padded_source(ra, sampler, return_mask=True)
    traced = []

    @jax.jit
    def masked_sum(x, lengths, mask, y):
        traced.append(x.shape)  # runs once per compilation
        return (x * mask).sum()

    total = 0
    for epoch in range(3):
        want = stream(ds.batch_iterator(None, shuffle=SEED, epoch=epoch))
        got = list(prefetch_to_device(ds.batch_iterator(None, shuffle=SEED, epoch=epoch)))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert all(np.array_equal(np.asarray(a), b) for a, b in zip(g, w))
            total += int(masked_sum(*g))
    assert total == 3 * int(ra.values.sum())
    # Three epochs of differently shuffled batches, yet only the sampler's shapes were compiled.
    assert len(traced) == len(set(traced)) <= len(sampler.batch_shapes())
    assert set(traced) <= set(sampler.batch_shapes())
    assert len(sampler.batch_shapes(drop_last=True)) <= len(sampler.bucket_lengths)


def test_tf_data_with_a_signature_of_unknown_lengths(ra, sampler):
    tf = pytest.importorskip("tensorflow")
    from batchup.adapters.tf import as_tf_dataset

    ds = padded_source(ra, sampler)
    signature = (tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None,), tf.int64),
                 tf.TensorSpec((None,), tf.int64))
    tds = as_tf_dataset(ds, None, shuffle=SEED, output_signature=signature)
    assert int(tds.cardinality()) == sampler.batches_per_epoch
    for epoch in (0, 1):
        got = [tuple(t.numpy() for t in batch) for batch in tds]
        assert_batches_equal(got, stream(ds.batch_iterator(None, shuffle=SEED, epoch=epoch)))
    # Packed rows have a fixed length, so the signature inferred from the first batch fits them all.
    from batchup.sequences import PackSequences

    packed = ArrayDataSource([ra]).map(PackSequences(96))
    got = [tuple(t.numpy() for t in batch) for batch in as_tf_dataset(packed, 40, shuffle=SEED)]
    assert_batches_equal(got, stream(packed.batch_iterator(40, shuffle=SEED)))


def test_packed_batches_through_torch_jax_and_keras(ra):
    """Packed rows (a varying number of rows of a fixed length) reach every framework unchanged."""
    from batchup.sequences import PackSequences

    ds = ArrayDataSource([ra]).map(PackSequences(96))
    for epoch in (0, 1):
        want = stream(ds.batch_iterator(40, shuffle=SEED, epoch=epoch))
        assert len({x.shape[0] for x, _, _ in want}) > 1 and {x.shape[1] for x, _, _ in want} == {96}
        torch = pytest.importorskip("torch")
        from batchup.adapters.torch import as_iterable_dataset

        tds = as_iterable_dataset(ds, 40, shuffle=SEED, epoch=epoch)
        got = [tuple(t.numpy() for t in b) for b in torch.utils.data.DataLoader(tds, batch_size=None, num_workers=2)]
        assert_batches_equal(got, want)
        pytest.importorskip("jax")
        from batchup.adapters.jax import prefetch_to_device

        got = [tuple(np.asarray(a) for a in b)
               for b in prefetch_to_device(ds.batch_iterator(40, shuffle=SEED, epoch=epoch))]
        assert_batches_equal(got, want)
    pytest.importorskip("keras")
    from batchup.adapters.keras import as_py_dataset

    pyds = as_py_dataset(ds, 40, shuffle=SEED)
    assert_batches_equal([pyds[i] for i in range(len(pyds))], stream(ds.batch_iterator(40, shuffle=SEED)))
