"""tf.data adapter. TensorFlow is not in the test extras: these tests skip without it.

Run them with TensorFlow installed: ``pip install -e ".[tf]" && pytest tests/adapters/test_adapters_tf.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

from batchup.sources import ArrayDataSource, CallableDataSource

tf = pytest.importorskip("tensorflow")
from batchup.adapters.tf import as_tf_dataset, infer_signature  # noqa: E402


def _ids(ds):
    return [b[0].numpy().tolist() for b in ds]


def test_signature_is_inferred_and_cardinality_set():
    src = ArrayDataSource([np.zeros((10, 3), np.float32), np.arange(10)])
    ds = as_tf_dataset(src, 4)
    x_spec, y_spec = ds.element_spec
    assert x_spec.shape.as_list() == [None, 3] and x_spec.dtype == tf.float32
    assert y_spec.shape.as_list() == [None] and y_spec.dtype == tf.int64
    assert int(ds.cardinality()) == 3


def test_each_pass_is_the_next_epoch():
    ds = as_tf_dataset([np.arange(20)], 5, shuffle=3)
    first, second = _ids(ds), _ids(ds)
    assert sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(20))
    assert first != second
    again = as_tf_dataset([np.arange(20)], 5, shuffle=3)
    assert _ids(again) == first


def test_shards_are_disjoint_and_equal():
    parts = [sum(_ids(as_tf_dataset([np.arange(12)], 2, shuffle=1, shard=(r, 2))), []) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 6 and sorted(parts[0] + parts[1]) == list(range(12))


def test_unknown_length_leaves_cardinality_unknown():
    def batches(batch_size, **kwargs):
        for i in range(3):
            yield (np.full(batch_size, i),)

    ds = as_tf_dataset(CallableDataSource(batches), 2)
    assert int(ds.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    assert _ids(ds) == [[0, 0], [1, 1], [2, 2]]


def test_structure_and_dict_signature():
    sig = infer_signature(({"a": np.zeros((2, 5)), "b": np.zeros(2)}, np.zeros(2, np.int32)))
    assert sig[0]["a"].shape.as_list() == [None, 5] and sig[1].dtype == tf.int32
    ds = as_tf_dataset([np.arange(4.0), np.arange(4.0), np.arange(4)], 2, structure=((0, 1), 2))
    (x0, x1), y = next(iter(ds))
    assert x1.numpy().tolist() == [0.0, 1.0]


def test_empty_source_needs_a_signature():
    with pytest.raises(ValueError, match="cannot infer output_signature"):
        as_tf_dataset(ArrayDataSource([np.arange(10)], indices=np.zeros(0, np.int64)), 4)


def test_keras_fits_a_tf_dataset_for_several_epochs():
    """Cardinality is known, so Keras does not report that the input ran out of data."""
    import warnings

    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras runs on another backend here")
    X = np.random.default_rng(0).random((256, 4), dtype=np.float32)
    y = (X.sum(axis=1) > 2).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        hist = model.fit(as_tf_dataset([X, y], 32, shuffle=0), epochs=3, verbose=0, shuffle=False)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


def test_peeking_or_taking_part_of_a_pass_does_not_advance_the_epoch():
    src = ArrayDataSource([np.arange(20)])
    ds = as_tf_dataset(src, 5, shuffle=3)
    core = [[b[0].tolist() for b in src.batch_iterator(5, shuffle=3, epoch=e)] for e in range(2)]
    assert next(iter(ds))[0].numpy().tolist() == core[0][0]
    assert _ids(ds.take(2)) == core[0][:2]
    assert _ids(ds) == core[0]  # the first full pass is still epoch 0
    assert _ids(ds) == core[1]


def test_drop_last_gives_a_static_batch_dimension():
    src = ArrayDataSource([np.zeros((10, 3), np.float32), np.arange(10)])
    x_spec, y_spec = as_tf_dataset(src, 4, drop_last=True).element_spec
    assert x_spec.shape.as_list() == [4, 3] and y_spec.shape.as_list() == [4]
    x_spec, _ = as_tf_dataset(src, 4).element_spec
    assert x_spec.shape.as_list() == [None, 3]
