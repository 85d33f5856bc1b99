"""The Keras ``Sequence`` tutorial's use case end to end: a CSV of image names and box labels trains a
Keras model, images read per batch."""
from __future__ import annotations

import numpy as np
import pytest

from batchup.arrays import FileArray, read_image
from batchup.sources import ArrayDataSource

pd = pytest.importorskip("pandas")
Image = pytest.importorskip("PIL.Image")
keras = pytest.importorskip("keras")
keras_adapter = pytest.importorskip("batchup.adapters.keras")

N, SIDE = 48, 12


def _write_dataset(root):
    """Images with one bright box each; the CSV holds name, x, y, h, w (the tutorial's layout)."""
    rng = np.random.default_rng(0)
    rows = []
    (root / "data").mkdir()
    for i in range(N):
        x, y = rng.integers(0, SIDE - 4, size=2)
        h, w = rng.integers(2, 5, size=2)
        img = np.zeros((SIDE, SIDE), dtype=np.uint8)
        img[y : y + h, x : x + w] = 255
        name = f"img_{i:03d}.png"
        Image.fromarray(img).save(root / "data" / name)
        rows.append((name, x, y, h, w))
    pd.DataFrame(rows, columns=["image", "x", "y", "h", "w"]).to_csv(root / "data.csv", index=False)


class CountingImageLoader:
    """read_image to float32 in [0, 1], counting the files read."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, path):  # noqa: ANN001
        self.count += 1
        return read_image(path, dtype=np.float32)[..., None] / 255.0


def test_sequence_tutorial_use_case_trains_a_keras_model(tmp_path):
    """The CSV becomes an ArrayDataSource whose images load lazily; Keras fit trains on it."""
    _write_dataset(tmp_path)
    df = pd.read_csv(tmp_path / "data.csv")
    loader = CountingImageLoader()
    images = FileArray(df["image"], loader, base_dir=tmp_path / "data", max_workers=2)
    boxes = df[["x", "y", "h", "w"]].to_numpy(np.float32) / SIDE
    ds = ArrayDataSource([images, boxes])
    assert loader.count == 0

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((SIDE, SIDE, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(4),
    ])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    train = keras_adapter.as_py_dataset(ds, batch_size=16, shuffle=1)
    history = model.fit(train, epochs=4, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    # Every epoch read each image once (plus at most one batch Keras peeks at to build the model).
    assert 4 * N <= loader.count <= 5 * N
    pred = model.predict(keras_adapter.as_py_dataset(ArrayDataSource([images]), batch_size=16), verbose=0)
    assert pred.shape == (N, 4)
