"""The ``python -m batchup demo`` job: a softmax classifier in pure NumPy.

It trains on the UCI handwritten digits shipped inside the package
(1,797 8x8 images; E. Alpaydin and C. Kaynak, CC BY 4.0) and shows the
everyday batchup loop: shuffled batches from an ``ArrayDataSource``, a
seeded ``map`` augmentation, ``batch_map_mean`` for the validation loss and
error each epoch, ``batch_map_concat`` for the test predictions, and
progress bars. With ``dataset="mnist"`` it trains on MNIST instead when
that is cached or can be downloaded, and falls back to the digits otherwise.
"""
from __future__ import annotations

import gzip
import time
from importlib import resources
from typing import Any

import numpy as np

from batchup.pipeline import wrap_progress
from batchup.sources import ArrayDataSource

__all__ = ["load_digits", "run_demo"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return the shipped digits as ``(X, y)``: X float32 ``(1797, 1, 8, 8)`` in [0, 1], y int32.

    Examples
    --------
    >>> X, y = load_digits()
    >>> X.shape, X.dtype.name, y.shape, int(y.max())
    ((1797, 1, 8, 8), 'float32', (1797,), 9)
    """
    raw = resources.files("batchup").joinpath("data/digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode("ascii").splitlines(), delimiter=",", dtype=np.float32)
    X = (table[:, :64] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    y = table[:, 64].astype(np.int32)
    return X, y


def _augment(X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple:
    """Augment a batch: jitter the contrast of each image and add pixel noise."""
    gain = rng.uniform(0.8, 1.2, size=(len(X), 1, 1, 1)).astype(np.float32)
    noise = rng.normal(0.0, 0.05, size=X.shape).astype(np.float32)
    return np.clip(X * gain + noise, 0.0, 1.0), y


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class SoftmaxClassifier:
    """A linear softmax classifier trained with plain SGD."""

    def __init__(self, n_in: int, n_classes: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.W = (rng.standard_normal((n_in, n_classes)) * 0.01).astype(np.float32)
        self.b = np.zeros(n_classes, dtype=np.float32)

    def probs(self, X: np.ndarray) -> np.ndarray:
        return _softmax(X.reshape(len(X), -1) @ self.W + self.b)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.probs(X).argmax(axis=1)

    def loss_and_errors(self, X: np.ndarray, y: np.ndarray) -> list:
        p = self.probs(X)
        loss = -np.log(p[np.arange(len(y)), y] + 1e-12).sum()
        return [loss, (p.argmax(axis=1) != y).sum()]

    def sgd_step(self, X: np.ndarray, y: np.ndarray, lr: float) -> None:
        flat = X.reshape(len(X), -1)
        grad = self.probs(X)
        grad[np.arange(len(y)), y] -= 1.0
        grad /= len(y)
        self.W -= lr * (flat.T @ grad)
        self.b -= lr * grad.sum(axis=0)


def _load_mnist(out: Any) -> tuple | None:
    """Return MNIST as (train, val, test sources, test labels, inputs), or None if it is unavailable."""
    try:
        from batchup.datasets import mnist

        ds = mnist.MNIST(n_val=0)
    except (OSError, ValueError, RuntimeError) as err:
        out(f"MNIST is not available ({type(err).__name__}: {err}); using the shipped digits instead")
        return None
    n = len(ds.train_y)
    n_val = min(10000, n // 6)
    train, val = np.arange(n - n_val), np.arange(n - n_val, n)
    out(f"mnist: {len(train)} train / {n_val} validation / {len(ds.test_y)} test samples, 28x28 pixels")
    return (ArrayDataSource([ds.train_X, ds.train_y], indices=train),
            ArrayDataSource([ds.train_X, ds.train_y], indices=val),
            ArrayDataSource([ds.test_X]), np.asarray(ds.test_y), 28 * 28)


def _load_digits(seed: int, out: Any) -> tuple:
    X, y = load_digits()
    order = np.random.default_rng(seed).permutation(len(X))
    train, val, test = order[:1197], order[1197:1497], order[1497:]
    out(f"digits: {len(train)} train / {len(val)} validation / {len(test)} test samples, 8x8 pixels")
    return (ArrayDataSource([X, y], indices=train), ArrayDataSource([X, y], indices=val),
            ArrayDataSource([X], indices=test), y[test], 64)


def run_demo(epochs: int = 20, batch_size: int = 64, seed: int = 0, lr: float = 0.5,
             progress: bool = True, out: Any = print, dataset: str = "digits") -> float:
    """Train the demo classifier on ``dataset`` ('digits' or 'mnist') and return its test accuracy."""
    if dataset not in ("digits", "mnist"):
        raise ValueError(f"dataset must be 'digits' or 'mnist', got {dataset!r}")
    data = _load_mnist(out) if dataset == "mnist" else None
    train_src, val_ds, test_ds, test_y, n_in = data if data is not None else _load_digits(seed, out)

    train_ds = train_src.map(_augment, seed=seed)
    model = SoftmaxClassifier(n_in, 10, seed)

    seen = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        it = train_ds.batch_iterator(batch_size, shuffle=seed + epoch)
        bar = wrap_progress(it, len(it), progress=f"epoch {epoch + 1}" if progress else False)
        for batch_X, batch_y in bar:
            model.sgd_step(batch_X, batch_y, lr)
            seen += len(batch_y)
        val_loss, val_err = val_ds.batch_map_mean(model.loss_and_errors, 256)
        out(f"epoch {epoch + 1:2d}: validation loss {val_loss:.4f}, error {val_err * 100:.2f}%")
    elapsed = time.perf_counter() - start

    (pred,) = test_ds.batch_map_concat(model.predict, 256, progress=progress)
    accuracy = float((pred == test_y).mean())
    out(f"test accuracy: {accuracy * 100:.2f}% on {len(test_y)} samples")
    out(f"training speed: {seen / elapsed:,.0f} samples/s ({seen} samples in {elapsed:.2f} s)")
    return accuracy
