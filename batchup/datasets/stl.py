"""STL-10: 96x96 colour images in 10 classes, plus 100,000 unlabelled images.

A. Coates, H. Lee and A. Y. Ng, "An Analysis of Single Layer Networks in
Unsupervised Feature Learning", AISTATS 2011. The 2.6 GB tarball is
verified, extracted safely, and its raw binaries are streamed into the cache
in chunks, so converting never holds the unlabelled set in memory.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from batchup._errors import ArchiveError
from batchup.datasets import _cache, _cifar
from batchup.datasets._base import SplitDataset, check_count, download_sources, hosted, open_cache
from batchup.datasets.dataset import delete_dataset_cache, fetch_and_convert_dataset
from batchup.image.utils import ImageArrayUInt8ToFloat32

__all__ = ["FILES", "HOSTS", "STL", "convert_stl", "delete_cache", "fetch_stl"]

#: Where the tarball is, tried in this order: the authors' page at its current Stanford address over
#: https, then the older address over plain http (the URL torchvision and TensorFlow Datasets use).
HOSTS = (
    "https://cs.stanford.edu/~acoates/stl10/",
    "http://ai.stanford.edu/~acoates/stl10/",
)
#: The source tarball.
FILES = (
    hosted("stl10_binary.tar.gz", "f31fd99273a1acb8609c8db427cebb1de3f71de77758cdc0e22956e1289b9866", *HOSTS),
)
CACHE = "stl10"
_FOLDER = "stl10_binary"
_IMAGE = 3 * 96 * 96
_CHUNK = 2048


def _member(root: str, name: str, tarball: str) -> str:
    path = os.path.join(root, _FOLDER, name)
    if not os.path.isfile(path):
        raise ArchiveError(f"{tarball} has no member '{_FOLDER}/{name}'")
    return path


def _copy_images(path: str, out: _cache.CacheWriter, key: str) -> int:
    """Stream column-major ``3x96x96`` images from ``path`` into ``key`` as ``(N, 3, 96, 96)``."""
    size = os.path.getsize(path)
    if size % _IMAGE:
        raise ArchiveError(f"{path} holds {size} bytes, not a whole number of {_IMAGE}-byte images")
    n = size // _IMAGE
    dest = out.create(key, (n, 3, 96, 96), np.uint8)
    with open(path, "rb") as f:
        for start in range(0, n, _CHUNK):
            count = min(_CHUNK, n - start)
            block = np.fromfile(f, dtype=np.uint8, count=count * _IMAGE).reshape(count, 3, 96, 96)
            dest[start:start + count] = block.swapaxes(2, 3)
    return n


def _labels(path: str, n: int) -> np.ndarray:
    y = np.fromfile(path, dtype=np.uint8).astype(np.int32)
    if len(y) != n or (n and (y.min() < 1 or y.max() > 10)):
        raise ArchiveError(f"{path} must hold {n} labels in 1..10, got {len(y)}")
    return y - 1


def convert_stl(tarball: str, target_path: str) -> str:
    """Convert the STL-10 binary tarball into the cache folder ``target_path``.

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
    out = _cache.CacheWriter(target_path, "stl10")
    with _cifar.Extracted(tarball) as root:
        for split in ("train", "test"):
            n = _copy_images(_member(root, f"{split}_X.bin", tarball), out, f"{split}_X_u8")
            out.save(f"{split}_y", _labels(_member(root, f"{split}_y.bin", tarball), n))
        n_train = out.arrays["train_X_u8"]["shape"][0]
        _copy_images(_member(root, "unlabeled_X.bin", tarball), out, "unl_X_u8")
        with open(_member(root, "class_names.txt", tarball), encoding="latin-1") as f:
            names = [line.strip() for line in f if line.strip()]
        out.save("class_names", np.array(names, dtype=str))
        with open(_member(root, "fold_indices.txt", tarball), encoding="ascii") as f:
            folds = [np.array(line.split(), dtype=np.int64) for line in f if line.strip()]
        for i, fold in enumerate(folds):
            if len(fold) and (fold.min() < 0 or fold.max() >= n_train):
                raise ArchiveError(f"fold_indices.txt line {i + 1} has indices outside 0..{n_train - 1}")
        out.save("fold_indices", np.concatenate(folds or [np.zeros(0, np.int64)]).astype(np.int32))
        out.save("fold_offsets", np.cumsum([0] + [len(f) for f in folds]).astype(np.int64))
    return out.finish()


@fetch_and_convert_dataset(lambda: download_sources(FILES, "stl10"), lambda: CACHE)
def fetch_stl(source_paths: list[str], target_path: str) -> str:
    """Fetch and convert STL-10 on first use; return its cache.

    Parameters
    ----------
    **kwargs
        Passed to each source file's ``acquire``.

    Returns
    -------
    str or None
        The cache folder; ``None`` after printing why the data could not be had
        (``fetch_stl.or_raise(**kwargs)`` raises that reason instead).
    """
    return convert_stl(source_paths[0], target_path)


def delete_cache() -> None:
    """Delete the converted STL-10 cache."""
    delete_dataset_cache(CACHE)


class STL(SplitDataset):
    """STL-10: 5,000 labelled training, 8,000 test and 100,000 unlabelled images, ``(N, 3, 96, 96)`` uint8.

    Parameters
    ----------
    n_val_folds : int or None, default 1
        How many of the 10 predefined training folds (the last ones) form the
        validation set; ``0`` or ``None`` leaves it empty.
    val_lower, val_upper : float, default 0.0 and 1.0
        The values pixel 0 and 255 map to in the float32 views.
    **kwargs
        Passed to the source file's ``acquire``.

    Attributes
    ----------
    train_X_u8, train_y, val_X_u8, val_y, test_X_u8, test_y
        uint8 images and int32 labels (0-9).
    train_X, val_X, test_X : ImageArrayUInt8ToFloat32
        float32 views.
    unl_X_u8 : numpy.ndarray
        The unlabelled images (memory-mapped; no float32 view, but
        ``source('unlabeled')`` serves one).
    tr_folds : list of numpy.ndarray
        The 10 folds of training indices (int32), as published.
    class_names : list of str
        The 10 class names, in label order.

    Raises
    ------
    RuntimeError
        If the dataset cannot be fetched (a download, copy or checksum
        failed, or the archive is broken); the message says why and
        ``__cause__`` holds the underlying error.

    Notes
    -----
    The published folds overlap. The validation set is the union of the last
    ``n_val_folds`` folds, each index once, in fold order; the training set
    is every other training index in increasing order, so ``len(train) +
    len(val) == 5000`` always holds (BatchUp 0.2 kept duplicates).

    Examples
    --------
    >>> from batchup.datasets import stl
    >>> ds = stl.STL(n_val_folds=1)  # doctest: +SKIP
    >>> ds.train_X_u8.shape, ds.val_X_u8.shape  # doctest: +SKIP
    ((4000, 3, 96, 96), (1000, 3, 96, 96))
    """

    splits = ("train", "val", "test", "unlabeled")

    def __init__(self, n_val_folds: Any = 1, val_lower: float = 0.0, val_upper: float = 1.0,
                 **kwargs: Any) -> None:
        arrays = open_cache(fetch_stl, "STL-10", **kwargs)
        X, y = arrays["train_X_u8"], np.asarray(arrays["train_y"], dtype=np.int32)
        flat, offsets = np.asarray(arrays["fold_indices"]), np.asarray(arrays["fold_offsets"])
        self.tr_folds = [np.array(flat[a:b], dtype=np.int32) for a, b in zip(offsets[:-1], offsets[1:])]
        f = check_count(n_val_folds, len(self.tr_folds) + 1, "n_val_folds", "folds and 0")
        if f == 0:
            self.train_X_u8, self.train_y = X, y
            self.val_X_u8, self.val_y = np.zeros((0, 3, 96, 96), np.uint8), np.zeros((0,), np.int32)
        else:
            joined = np.concatenate(self.tr_folds[-f:])
            _, first = np.unique(joined, return_index=True)
            val = joined[np.sort(first)]
            keep = np.ones(len(y), dtype=bool)
            keep[val] = False
            train = np.flatnonzero(keep)
            self.train_X_u8, self.train_y = X[train], y[train]
            self.val_X_u8, self.val_y = X[val], y[val]
        self.test_X_u8 = arrays["test_X_u8"]
        self.test_y = np.asarray(arrays["test_y"], dtype=np.int32)
        self.unl_X_u8 = arrays["unl_X_u8"]
        self.class_names = [str(s) for s in arrays["class_names"]]
        self.train_X = ImageArrayUInt8ToFloat32(self.train_X_u8, val_lower, val_upper)
        self.val_X = ImageArrayUInt8ToFloat32(self.val_X_u8, val_lower, val_upper)
        self.test_X = ImageArrayUInt8ToFloat32(self.test_X_u8, val_lower, val_upper)
        self._unl_X = ImageArrayUInt8ToFloat32(self.unl_X_u8, val_lower, val_upper)

    def _split_arrays(self, split: str, uint8: bool) -> list[Any]:
        if split == "unlabeled":
            return [self.unl_X_u8 if uint8 else self._unl_X]
        return super()._split_arrays(split, uint8)
