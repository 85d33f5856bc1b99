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
import math
import os
import time
from importlib import resources
from typing import Any, Callable

import numpy as np

from batchup._checks import is_int, positive_int
from batchup.sources import ArrayDataSource

__all__ = ["load_digits", "run_demo"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return the shipped digits as ``(X, y)``: X float32 ``(1797, 1, 8, 8)`` in [0, 1], y int32.

    The 8x8 handwritten digits (UCI, CC BY 4.0) that ship with batchup, so
    the demo and the guides run without a download.

    Returns
    -------
    X : numpy.ndarray
        float32 images of shape ``(1797, 1, 8, 8)``, scaled to ``[0, 1]``.
    y : numpy.ndarray
        int32 labels ``0..9``, shape ``(1797,)``.

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


def _check_options(epochs: Any, batch_size: Any, seed: Any, lr: Any, dataset: Any) -> None:
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    if not is_int(seed):
        raise TypeError(f"seed must be an int, got {seed!r} of type {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int from 0 to 2**32 - 1, got {seed!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise TypeError(f"lr must be a number, got {lr!r} of type {type(lr).__name__}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number greater than 0, got {lr!r}")
    if dataset not in ("digits", "mnist"):
        raise ValueError(f"dataset must be 'digits' or 'mnist', got {dataset!r}")


class _EpochBar:
    """One progress bar per epoch that stays on screen, showing the epoch's validation result when done.

    Without a terminal (or with ``progress=False``) no bar is drawn and the
    summary goes to ``out`` instead, one line per epoch.
    """

    def __init__(self, epoch: int, epochs: int, total: int, progress: bool, out: Callable[[str], Any]) -> None:
        self.out, self.bar = out, None
        if progress:
            from tqdm.auto import tqdm  # imported lazily: tqdm is needed only for bars

            options: dict = {"total": total, "unit": "batch", "leave": True,
                             "desc": f"epoch {epoch:{len(str(epochs))}d}/{epochs}"}
            if "TQDM_DISABLE" not in os.environ:
                options["disable"] = None  # no bar when the output is not a terminal
            bar = tqdm(**options)
            self.bar = None if bar.disable else bar

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def finish(self, summary: str) -> None:
        if self.bar is None:
            self.out(summary)
            return
        self.bar.set_postfix_str(summary.split(": ", 1)[1], refresh=False)
        self.bar.close()


def run_demo(epochs: int = 20, batch_size: int = 64, seed: int = 0, lr: float = 0.5,
             progress: bool = True, out: Any = print, dataset: str = "digits") -> float:
    """Train the demo classifier and return its test accuracy.

    Parameters
    ----------
    epochs : int, default 20
        Training epochs (at least 1).
    batch_size : int, default 64
        Samples per training batch (at least 1).
    seed : int, default 0
        Seed of the data split, the shuffling, the augmentation and the
        initial weights, from 0 to 2**32 - 1.
    lr : float, default 0.5
        SGD learning rate (finite, greater than 0).
    progress : bool, default True
        Draw a progress bar per epoch when the output is a terminal; each bar
        stays on screen and shows that epoch's validation loss and error.
    out : callable, default print
        Receives the report lines: the data set, one validation summary per
        epoch (when no bar shows it), the test accuracy and the speed.
    dataset : {'digits', 'mnist'}, default 'digits'
        The shipped digits, or MNIST when it is cached or can be downloaded
        (falling back to the digits otherwise).

    Returns
    -------
    float
        The accuracy on the test split, between 0 and 1.

    Raises
    ------
    TypeError, ValueError
        For an option of the wrong type or out of range; the message names it.

    Examples
    --------
    >>> lines = []
    >>> acc = run_demo(epochs=2, batch_size=32, progress=False, out=lines.append)
    >>> lines[0]
    'digits: 1197 train / 300 validation / 300 test samples, 8x8 pixels'
    >>> lines[1].startswith("epoch 1: validation loss")
    True
    """
    _check_options(epochs, batch_size, seed, lr, dataset)
    data = _load_mnist(out) if dataset == "mnist" else None
    train_src, val_ds, test_ds, test_y, n_in = data if data is not None else _load_digits(seed, out)

    train_ds = train_src.map(_augment, seed=seed)
    model = SoftmaxClassifier(n_in, 10, seed)

    seen = 0
    width = len(str(epochs))
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        # each epoch's order comes from its own seed; the modulo keeps it a valid seed for any `seed`
        it = train_ds.batch_iterator(batch_size, shuffle=(seed + epoch - 1) % 2**32)
        bar = _EpochBar(epoch, epochs, len(it), progress, out)
        for batch_X, batch_y in it:
            model.sgd_step(batch_X, batch_y, lr)
            seen += len(batch_y)
            bar.update()
        val_loss, val_err = val_ds.batch_map_mean(model.loss_and_errors, 256)
        bar.finish(f"epoch {epoch:{width}d}: validation loss {val_loss:.4f}, error {val_err * 100:.2f}%")
    elapsed = max(time.perf_counter() - start, 1e-9)

    (pred,) = test_ds.batch_map_concat(model.predict, 256, progress=progress)
    accuracy = float((pred == test_y).mean())
    out(f"test accuracy: {accuracy * 100:.2f}% on {len(test_y)} samples")
    out(f"training speed: {seen / elapsed:,.0f} samples/s ({seen} samples in {elapsed:.2f} s)")
    return accuracy
