"""keras-batchflow's example end to end: a model built from ``shape`` / ``n_classes`` trains on a DataFrameSource."""
from __future__ import annotations

import numpy as np
import pytest

from batchup.tables import DataFrameSource

pd = pytest.importorskip("pandas")
prep = pytest.importorskip("sklearn.preprocessing")
keras = pytest.importorskip("keras")
keras_adapter = pytest.importorskip("batchup.adapters.keras")


def test_keras_batchflow_model_trains_on_a_dataframe_source():
    """Two categorical inputs through embeddings, a one-hot target: keras-batchflow's model."""
    rng = np.random.default_rng(0)
    n = 200
    var1 = rng.choice(["Class 0", "Class 1", "Class 2"], n)
    var2 = rng.choice(["Green", "Yellow", "Red", "Brown"], n)
    # The label is a function of the inputs, so the model can learn it.
    label = np.where(var1 == "Class 0", "Leaf", np.where(var2 == "Red", "Flower", "Branch"))
    df = pd.DataFrame({"var1": var1, "var2": var2, "label": label})
    var1_enc = prep.LabelEncoder().fit(df["var1"])
    var2_enc = prep.LabelEncoder().fit(df["var2"])
    label_enc = prep.LabelBinarizer().fit(df["label"])
    ds = DataFrameSource(
        df, x_structure=[("var1", var1_enc), ("var2", var2_enc)], y_structure=("label", label_enc)
    )
    shapes, n_classes = ds.shape, ds.n_classes
    assert shapes == ([(None,), (None,)], (None, 3))

    keras.utils.set_random_seed(0)
    var1_input = keras.Input(shape=shapes[0][0][1:])
    var2_input = keras.Input(shape=shapes[0][1][1:])
    var1_emb = keras.layers.Embedding(n_classes[0][0], 4)(var1_input)
    var2_emb = keras.layers.Embedding(n_classes[0][1], 4)(var2_input)
    features = keras.layers.Concatenate()([var1_emb, var2_emb])
    classes = keras.layers.Dense(shapes[1][1], activation="softmax")(features)
    model = keras.Model([var1_input, var2_input], classes)
    model.compile(keras.optimizers.Adam(0.05), "categorical_crossentropy", metrics=["accuracy"])

    train = keras_adapter.as_py_dataset(ds, batch_size=32, shuffle=7)
    history = model.fit(train, epochs=8, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert history.history["accuracy"][-1] > 0.9

    # Predict in order (batches (x,) without targets) and compare with the labels.
    pred_ds = DataFrameSource(df, x_structure=[("var1", var1_enc), ("var2", var2_enc)])
    pred = model.predict(keras_adapter.as_py_dataset(pred_ds, batch_size=64), verbose=0)
    assert pred.shape == (n, 3)
    assert (label_enc.classes_[pred.argmax(1)] == label).mean() > 0.9
