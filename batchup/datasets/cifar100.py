"""CIFAR-100: 60,000 32x32 colour images in 100 fine classes grouped into 20 coarse ones.

A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images",
technical report, University of Toronto, 2009. Read like CIFAR-10: the
tarball is verified first and its pickles are loaded with a restricted
unpickler.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup._errors import ArchiveError
from batchup.datasets import _cache, _cifar
from batchup.datasets._base import ImageSplits, check_count, download_sources, hosted, open_cache
from batchup.datasets.cifar10 import HOSTS  # the same two hosts serve both tarballs
from batchup.datasets.dataset import classnames_from_h5, delete_dataset_cache, fetch_and_convert_dataset
from batchup.sources import ArrayDataSource

__all__ = ["CIFAR100", "FILES", "HOSTS", "convert_cifar100", "delete_cache", "fetch_cifar100"]

#: The source tarball, found on the hosts of CIFAR-10 (:data:`batchup.datasets.cifar10.HOSTS`).
FILES = (
    hosted("cifar-100-python.tar.gz", "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", *HOSTS),
)
CACHE = "cifar100"
_FOLDER = "cifar-100-python"


def _names(meta: dict[str, Any], key: str, member: str, n: int) -> np.ndarray:
    names = classnames_from_h5(_cifar.field(meta, key, member))
    if len(names) != n:
        raise ArchiveError(f"{member}: {key} lists {len(names)} names, expected {n}")
    return np.array(names, dtype=str)


def convert_cifar100(tarball: str, target_path: str) -> str:
    """Convert the CIFAR-100 python tarball into the cache folder ``target_path``.

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
    out = _cache.CacheWriter(target_path, "cifar100")
    with _cifar.Extracted(tarball) as root:
        for split in ("train", "test"):
            member = f"{_FOLDER}/{split}"
            batch = _cifar.read_batch(root, member, tarball)
            X = _cifar.images(batch, member)
            out.save(f"{split}_X_u8", X)
            out.save(f"{split}_y", _cifar.labels(batch, "fine_labels", member, len(X), 100))
            out.save(f"{split}_y_coarse", _cifar.labels(batch, "coarse_labels", member, len(X), 20))
        member = f"{_FOLDER}/meta"
        meta = _cifar.read_batch(root, member, tarball)
        out.save("class_names", _names(meta, "fine_label_names", member, 100))
        out.save("class_names_coarse", _names(meta, "coarse_label_names", member, 20))
    return out.finish()


@fetch_and_convert_dataset(lambda: download_sources(FILES, "cifar100"), lambda: CACHE)
def fetch_cifar100(source_paths: list[str], target_path: str) -> str:
    """Fetch and convert CIFAR-100 on first use; return its cache.

    Parameters
    ----------
    **kwargs
        Passed to each source file's ``acquire``.

    Returns
    -------
    str or None
        The cache folder; ``None`` after printing why the data could not be had
        (``fetch_cifar100.or_raise(**kwargs)`` raises that reason instead).
    """
    return convert_cifar100(source_paths[0], target_path)


def delete_cache() -> None:
    """Delete the converted CIFAR-100 cache."""
    delete_dataset_cache(CACHE)


class CIFAR100(ImageSplits):
    """CIFAR-100 with fine (0-99) and coarse (0-19) labels and both lists of class names.

    Attributes are those of :class:`~batchup.datasets.mnist.MNISTBase`, plus
    ``train_y_coarse``, ``val_y_coarse``, ``test_y_coarse``, ``class_names``
    (100 str) and ``class_names_coarse`` (20 str). :meth:`source` takes
    ``coarse=True`` to add the coarse labels as a third array.

    Parameters
    ----------
    n_val : int or None, default 10000
        The last ``n_val`` training samples become the validation set;
        ``0`` or ``None`` leaves it empty.
    val_lower, val_upper : float, default 0.0 and 1.0
        The values pixel 0 and 255 map to in the float32 views.
    **kwargs
        Passed to the source file's ``acquire``.

    Raises
    ------
    RuntimeError
        If the dataset cannot be fetched (a download, copy or checksum
        failed, or the archive is broken); the message says why and
        ``__cause__`` holds the underlying error.

    Examples
    --------
    >>> from batchup.datasets import cifar100
    >>> ds = cifar100.CIFAR100(n_val=5000)  # doctest: +SKIP
    >>> ds.class_names_coarse[ds.train_y_coarse[0]]  # doctest: +SKIP
    'large_omnivores_and_herbivores'
    """

    def __init__(self, n_val: Any = 10000, val_lower: float = 0.0, val_upper: float = 1.0, **kwargs: Any) -> None:
        arrays = open_cache(fetch_cifar100, "CIFAR-100", **kwargs)
        self._set_splits(arrays, n_val, val_lower, val_upper)
        coarse = np.asarray(arrays["train_y_coarse"], dtype=np.int32)
        n_val = check_count(n_val, len(coarse), "n_val")
        self.train_y_coarse, self.val_y_coarse = (coarse[:-n_val], coarse[-n_val:]) if n_val else \
            (coarse, np.zeros((0,), np.int32))
        self.test_y_coarse = np.asarray(arrays["test_y_coarse"], dtype=np.int32)
        self.class_names = [str(s) for s in arrays["class_names"]]
        self.class_names_coarse = [str(s) for s in arrays["class_names_coarse"]]

    def source(self, split: str = "train", *, uint8: bool = False, coarse: bool = False, **kwargs: Any) -> ArrayDataSource:
        """Return an ``ArrayDataSource`` over ``[X, y]`` of ``split``, or ``[X, y, y_coarse]`` with ``coarse=True``.

        Parameters
        ----------
        split : str, default 'train'
            One of ``'train'``, ``'val'``, ``'test'``.
        uint8 : bool, default False
            Keyword-only. Serve the raw uint8 images instead of the float32 view.
        coarse : bool, default False
            Keyword-only. Add the coarse labels as a third array.
        **kwargs
            Passed to :class:`~batchup.sources.ArrayDataSource`.

        Returns
        -------
        ArrayDataSource
            A data source over the split.
        """
        self._check_split(split)
        arrays = self._split_arrays(split, uint8)
        if coarse:
            arrays.append(getattr(self, f"{split}_y_coarse"))
        return ArrayDataSource(arrays, **kwargs)
