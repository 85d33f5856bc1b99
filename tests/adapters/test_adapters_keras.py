"""Keras adapter: PyDataset epochs and structures, generators, and real model.fit / evaluate / predict."""
from __future__ import annotations

import collections
import pickle
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup._rng import SeedKey
from batchup.adapters.keras import EpochBatches, as_generator, steps_per_epoch
from batchup.demo import load_digits
from batchup.sources import ArrayDataSource, CallableDataSource, IteratorDataSource

keras = pytest.importorskip("keras")
from batchup.adapters.keras import as_py_dataset  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X.reshape(len(X), -1), y


def _ids(table):
    return [b[0].tolist() for b in table]


# -- EpochBatches: the epoch logic, without Keras ----------------------------------------------

@given(n=st.integers(1, 60), bs=st.integers(1, 16), seed=st.integers(0, 2**32 - 1), epoch=st.integers(0, 5))
def test_every_epoch_is_a_permutation_in_batches(n, bs, seed, epoch):
    """Each epoch's batches cover every sample once; only the last batch may be short."""
    table = EpochBatches(ArrayDataSource([np.arange(n)]), bs, shuffle=seed, epoch=epoch)
    batches = _ids(table)
    assert len(table) == -(-n // bs) == len(batches)
    assert sorted(sum(batches, [])) == list(range(n))
    assert all(len(b) == bs for b in batches[:-1])


def test_order_depends_on_seed_and_epoch_only():
    ds = ArrayDataSource([np.arange(50)])
    a = EpochBatches(ds, 8, shuffle=5)
    b = EpochBatches(ds, 8, shuffle=5)
    assert _ids(a) == _ids(b)
    first = _ids(a)
    a.set_epoch(1)
    assert _ids(a) != first
    assert _ids(EpochBatches(ds, 8, shuffle=5, epoch=1)) == _ids(a)
    assert _ids(EpochBatches(ds, 8, shuffle=6)) != first


def test_in_order_and_drop_last():
    table = EpochBatches([np.arange(7)], 3, drop_last=True)
    assert _ids(table) == [[0, 1, 2], [3, 4, 5]]


def test_epoch_advances_only_after_a_whole_pass():
    """Spurious on_epoch_end calls (Keras makes several) never change the order mid-pass."""
    table = EpochBatches([np.arange(12)], 4, shuffle=1)
    table.end_epoch()  # before anything was served: Keras' reset()
    assert table.epoch == 0
    table[0]  # Keras peeks at one batch to build the model
    table.end_epoch()
    assert table.epoch == 0
    for i in range(len(table)):
        table[i]
    table.end_epoch()
    table.end_epoch()
    assert table.epoch == 1


def test_a_pass_split_over_keras_epochs_keeps_its_order():
    """steps_per_epoch < len: on_epoch_end after each slice, the order holds until the pass is done."""
    table = EpochBatches([np.arange(16)], 4, shuffle=2)
    order = _ids(EpochBatches([np.arange(16)], 4, shuffle=2))
    got = [table[i][0].tolist() for i in range(3)]
    table.end_epoch()
    got.append(table[3][0].tolist())
    table.end_epoch()
    assert got == order and table.epoch == 1


def test_pickle_keeps_epoch_and_count():
    table = EpochBatches([np.arange(8)], 4, shuffle=3, epoch=2)
    table[0]
    copy = pickle.loads(pickle.dumps(table))
    assert copy.epoch == 2 and _ids(copy) == _ids(table)


def test_seeded_map_gets_the_global_batch_number():
    """Batch i of epoch e reaches a seeded map as number e * len + i."""
    seen = []

    def fn(x, rng):
        seen.append(int(rng.integers(1 << 30)))
        return (x,)

    src = ArrayDataSource([np.arange(6)]).map(fn, seed=9)
    table = EpochBatches(src, 2, epoch=1)
    table[2]
    assert seen == [int(SeedKey(9).generator(5).integers(1 << 30))]


def test_structure_and_sample_weights():
    X1, X2, y, w = np.arange(4), np.arange(4) * 2, np.arange(4) % 2, np.ones(4)
    table = EpochBatches([X1, X2, y, w], 4, structure=({"a": 0, "b": 1}, 2, 3))
    x, yy, ww = table[0]
    assert set(x) == {"a", "b"} and x["b"].tolist() == [0, 2, 4, 6] and ww.tolist() == [1, 1, 1, 1]


def test_too_many_arrays_without_structure():
    table = EpochBatches([np.arange(4)] * 4, 2)
    with pytest.raises(ValueError, match="pass structure="):
        table[0]


def test_include_indices_are_dropped_by_structure():
    table = EpochBatches(ArrayDataSource([np.arange(4) * 10], include_indices=True), 2, structure=(1,))
    assert table[1][0].tolist() == [20, 30]


@pytest.mark.parametrize(
    "source, err, msg",
    [(CallableDataSource(lambda bs, **kw: iter([])), TypeError, "use batchup.adapters.keras.as_generator"),
     (ArrayDataSource([np.arange(4)], repeats=-1), ValueError, "repeats forever")],
)
def test_sources_a_py_dataset_cannot_take(source, err, msg):
    with pytest.raises(err, match=msg):
        EpochBatches(source, 2)


def test_bad_index():
    table = EpochBatches([np.arange(4)], 2)
    with pytest.raises(IndexError, match="batch index 2 is out of range for an epoch of 2 batches"):
        table[2]
    with pytest.raises(TypeError, match="index must be an int"):
        table["0"]
    assert table[-1][0].tolist() == [2, 3]


def test_shard_splits_every_epoch():
    parts = [_ids(EpochBatches([np.arange(10)], 2, shuffle=4, shard=(r, 2))) for r in range(2)]
    flat = [sum(p, []) for p in parts]
    assert len(parts[0]) == len(parts[1]) and not set(flat[0]) & set(flat[1])
    assert sorted(flat[0] + flat[1]) == list(range(10))


# -- generators ------------------------------------------------------------------------------

def test_generator_is_a_real_generator_of_tuples():
    gen = as_generator([np.arange(5), np.arange(5)], 2, shuffle=1, epochs=2)
    assert isinstance(gen, types.GeneratorType)
    batches = list(gen)
    assert len(batches) == 6 and all(type(b) is tuple for b in batches)
    first, second = batches[:3], batches[3:]
    assert sorted(np.concatenate([b[0] for b in first]).tolist()) == list(range(5))
    assert [b[0].tolist() for b in first] != [b[0].tolist() for b in second]


def test_generator_checks_arguments_at_the_call():
    with pytest.raises(ValueError, match="epochs must be None"):
        as_generator([np.arange(5)], 2, epochs=-1)


def test_generator_over_a_used_up_iterator_stops():
    src = IteratorDataSource(iter([(np.arange(2),), (np.arange(2),)]))
    assert len(list(as_generator(src, 2))) == 2  # epochs=None, yet it ends


def test_steps_per_epoch():
    assert steps_per_epoch([np.arange(10)], 3) == 4
    assert steps_per_epoch([np.arange(10)], 3, shard=(1, 3)) == 2
    with pytest.raises(ValueError, match="steps per epoch are unknown"):
        steps_per_epoch(ArrayDataSource([np.arange(10)], repeats=-1), 3)


# -- real Keras (KERAS_BACKEND=jax from tests/conftest.py) ------------------------------------

def _model(n_in, n_out=10):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(n_out, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_fit_learns_the_digits_then_evaluate_and_predict(digits):
    """The loss goes down over epochs; predict on an in-order dataset matches predict on arrays."""
    X, y = digits
    train = ArrayDataSource([X, y], indices=np.arange(1400))
    ds = as_py_dataset(train, 64, shuffle=0)
    model = _model(X.shape[1])
    hist = model.fit(ds, epochs=3, verbose=0, shuffle=False).history["loss"]
    assert hist[-1] < 0.7 * hist[0]
    assert ds.epoch == 3  # Keras' extra on_epoch_end calls did not count as epochs
    test = ArrayDataSource([X, y], indices=np.arange(1400, len(X)))
    loss, acc = model.evaluate(as_py_dataset(test, 100), verbose=0)
    assert acc > 0.8
    pred = model.predict(as_py_dataset(ArrayDataSource([X[1400:]]), 100), verbose=0)
    np.testing.assert_allclose(pred, model.predict(X[1400:], verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [{"workers": 2}, {"workers": 2, "use_multiprocessing": True}],
                         ids=["threads", "processes"])
def test_keras_workers_are_passed_through(digits, options):
    """Keras' own workers fetch the items; passes fetched in worker processes are counted too.

    Keras' enqueuer prefetches a whole pass when fit() first peeks at one batch and serves
    the rest of it in the first epoch, so one more pass is fetched than fit has epochs.
    """
    X, y = digits
    ds = as_py_dataset([X[:512], y[:512]], 128, shuffle=1, **options)
    assert ds.workers == 2 and ds.use_multiprocessing == options.get("use_multiprocessing", False)
    model = _model(X.shape[1])
    model.fit(ds, epochs=2, verbose=0)
    assert ds.epoch in (2, 3)


def test_multi_input_model_with_named_inputs():
    """keras-batchflow's example: two categorical columns feed two embeddings, batches arrive as ({...}, y)."""
    rng = np.random.default_rng(0)
    var1, var2 = rng.integers(0, 3, 256), rng.integers(0, 4, 256)
    label = (var1 + var2) % 3
    keras.utils.set_random_seed(0)
    in1, in2 = keras.Input((1,), name="var1"), keras.Input((1,), name="var2")
    feats = keras.layers.Concatenate()([keras.layers.Flatten()(keras.layers.Embedding(3, 4)(in1)),
                                        keras.layers.Flatten()(keras.layers.Embedding(4, 4)(in2))])
    model = keras.Model([in1, in2], keras.layers.Dense(3, activation="softmax")(feats))
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    ds = as_py_dataset([var1[:, None], var2[:, None], label], 32, shuffle=0,
                       structure=({"var1": 0, "var2": 1}, 2))
    hist = model.fit(ds, epochs=4, verbose=0).history["loss"]
    assert hist[-1] < hist[0]


def test_fit_with_sample_weights_and_a_generator(digits):
    """(x, y, sample_weight) batches through a real generator with steps_per_epoch."""
    X, y = digits
    w = np.where(y == 0, 0.0, 1.0).astype(np.float32)
    src = ArrayDataSource([X, y, w], indices=np.arange(512))
    model = _model(X.shape[1])
    gen = as_generator(src, 64, shuffle=0)
    hist = model.fit(gen, steps_per_epoch=steps_per_epoch(src, 64), epochs=2, verbose=0).history["loss"]
    assert len(hist) == 2 and np.isfinite(hist).all()


def test_balanced_batches_feed_keras(digits):
    """The n-class x m-sample balanced batch generator: batches from BalancedSampler, one-hot labels."""
    from batchup.samplers.balanced import BalancedSampler, OneHotLabels

    X, y = digits
    sampler = BalancedSampler(y[:600], classes_per_batch=5, samples_per_class=4, seed=0)
    src = ArrayDataSource([X[:600], y[:600]], sampler=sampler).map(OneHotLabels(10))
    ds = as_py_dataset(src, 20, shuffle=0)
    xb, yb = ds[0]
    assert xb.shape == (20, 64) and yb.shape == (20, 10)
    classes = collections.Counter(yb.argmax(axis=1).tolist())
    assert len(classes) == 5 and set(classes.values()) == {4}
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    model.fit(ds, epochs=1, verbose=0)


def test_generator_over_a_batchup_pool_matches_the_serial_source():
    """batchup's pools instead of Keras' workers: the same batches, in order."""
    from batchup import work_pool

    src = ArrayDataSource([np.arange(40), np.arange(40) * 2]).map(lambda x, y, rng: (x + rng.integers(9), y),
                                                                      seed=3)
    serial = [b[0].tolist() for b in as_generator(src, 8, shuffle=2, epochs=2)]
    with work_pool.WorkerThreadPool(processes=2) as pool:
        parallel = pool.parallel_data_source(src, batch_buffer_size=4)
        pooled = [b[0].tolist() for b in as_generator(parallel, 8, shuffle=2, epochs=2)]
    assert pooled == serial and len(serial) == 10
