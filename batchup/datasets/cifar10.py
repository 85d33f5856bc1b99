"""CIFAR-10: 60,000 32x32 colour images in 10 classes (50,000 training, 10,000 test).

A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images",
technical report, University of Toronto, 2009. The python tarball is
verified before anything in it is read; its pickles are loaded with a
restricted unpickler that admits NumPy arrays only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup.datasets import _cache, _cifar
from batchup.datasets._base import ImageSplits, download_sources, hosted, open_cache
from batchup.datasets.dataset import delete_dataset_cache, fetch_and_convert_dataset

__all__ = ["CIFAR10", "CLASS_NAMES", "FILES", "HOSTS", "convert_cifar10", "delete_cache", "fetch_cifar10"]

#: Where the tarball is, tried in this order: the author's Toronto page (the URL torchvision and Keras
#: use), then the copy PaddlePaddle downloads.
HOSTS = (
    "https://www.cs.toronto.edu/~kriz/",
    "https://dataset.bj.bcebos.com/cifar/",
)
#: The source tarball.
FILES = (
    hosted("cifar-10-python.tar.gz", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", *HOSTS),
)
CACHE = "cifar10"
#: The names of labels 0 to 9.
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_FOLDER = "cifar-10-batches-py"
_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def convert_cifar10(tarball: str, target_path: str) -> str:
    """Convert the CIFAR-10 python tarball into the cache folder ``target_path``.

    Parameters
    ----------
    tarball : str
        The verified source archive.
    target_path : str
        The cache folder to create.

    Returns
    -------
    str
        The finished cache folder.
    """
    out = _cache.CacheWriter(target_path, "cifar10")
    with _cifar.Extracted(tarball) as root:
        for split, names in (("train", _TRAIN), ("test", ["test_batch"])):
            Xs, ys = [], []
            for name in names:
                member = f"{_FOLDER}/{name}"
                batch = _cifar.read_batch(root, member, tarball)
                Xs.append(_cifar.images(batch, member))
                ys.append(_cifar.labels(batch, "labels", member, len(Xs[-1]), 10))
            X = out.create(f"{split}_X_u8", (sum(map(len, Xs)), 3, 32, 32))
            np.concatenate(Xs, out=X)
            out.save(f"{split}_y", np.concatenate(ys))
    return out.finish()


@fetch_and_convert_dataset(lambda: download_sources(FILES, "cifar10"), lambda: CACHE)
def fetch_cifar10(source_paths: list[str], target_path: str) -> str:
    """Fetch and convert CIFAR-10 on first use; return its cache.

    Parameters
    ----------
    **kwargs
        Passed to each source file's ``acquire``.

    Returns
    -------
    str or None
        The cache folder; ``None`` after printing why the data could not be had
        (``fetch_cifar10.or_raise(**kwargs)`` raises that reason instead).
    """
    return convert_cifar10(source_paths[0], target_path)


def delete_cache() -> None:
    """Delete the converted CIFAR-10 cache."""
    delete_dataset_cache(CACHE)


class CIFAR10(ImageSplits):
    """CIFAR-10: images ``(N, 3, 32, 32)`` uint8 with float32 views, int32 labels, ``class_names``.

    Attributes are those of :class:`~batchup.datasets.mnist.MNISTBase`, plus
    ``class_names`` (a list of 10 str).

    Parameters
    ----------
    n_val : int or None, default 10000
        The last ``n_val`` training samples become the validation set;
        ``0`` or ``None`` leaves it empty.
    val_lower, val_upper : float, default 0.0 and 1.0
        The values pixel 0 and 255 map to in the float32 views.
    **kwargs
        Passed to the source files' ``acquire`` (none of the standard
        sources takes any).

    Raises
    ------
    RuntimeError
        If the dataset cannot be fetched (a download, copy or checksum
        failed, or the archive is broken); the message says why and
        ``__cause__`` holds the underlying error.

    Examples
    --------
    >>> from batchup.datasets import cifar10
    >>> ds = cifar10.CIFAR10(n_val=5000)  # doctest: +SKIP
    >>> ds.train_X.shape, ds.class_names[ds.train_y[0]]  # doctest: +SKIP
    ((45000, 3, 32, 32), 'frog')
    """

    def __init__(self, n_val: Any = 10000, val_lower: float = 0.0, val_upper: float = 1.0, **kwargs: Any) -> None:
        self._set_splits(open_cache(fetch_cifar10, "CIFAR-10", **kwargs), n_val, val_lower, val_upper)
        self.class_names = list(CLASS_NAMES)
