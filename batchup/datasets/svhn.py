"""SVHN: Street View House Numbers, 32x32 colour digit crops.

Y. Netzer, T. Wang, A. Coates, A. Bissacco, B. Wu and A. Y. Ng, "Reading
Digits in Natural Images with Unsupervised Feature Learning", NIPS Workshop
on Deep Learning and Unsupervised Feature Learning, 2011. For non-commercial
use only. The MATLAB files need scipy (``pip install batchup[datasets]``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup._errors import ArchiveError
from batchup._optional import import_optional
from batchup.datasets import _cache
from batchup.datasets._base import ImageSplits, SplitDataset, download_sources, hosted, open_cache
from batchup.datasets.dataset import delete_dataset_cache, fetch_and_convert_dataset
from batchup.image.utils import ImageArrayUInt8ToFloat32

__all__ = ["EXTRA_FILES", "FILES", "HOSTS", "SVHN", "SVHNExtra", "delete_cache", "fetch_svhn_extra",
           "fetch_svhn_train_test"]

#: Where the files are, tried in this order: the authors' Stanford page over https, then over plain
#: http (the URL torchvision and TensorFlow Datasets use).
HOSTS = (
    "https://ufldl.stanford.edu/housenumbers/",
    "http://ufldl.stanford.edu/housenumbers/",
)
#: The training and test files.
FILES = (
    hosted("train_32x32.mat", "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8", *HOSTS),
    hosted("test_32x32.mat", "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b", *HOSTS),
)
#: The extra (easier) training file.
EXTRA_FILES = (
    hosted("extra_32x32.mat", "a133a4beb38a00fcdda90c9489e0c04f900b660ce8a316a5e854838379a71eb3", *HOSTS),
)
CACHE = "svhn_train_test"
EXTRA_CACHE = "svhn_extra"
_CHUNK = 10240


def _loadmat(path: str) -> dict[str, Any]:
    loadmat = import_optional("scipy.io", "datasets", "SVHN (reading its .mat files)").loadmat
    try:
        return loadmat(path)
    except (ValueError, OSError, TypeError) as err:
        raise ArchiveError(f"cannot read the MATLAB file {path}: {err}") from err


def _write_split(out: _cache.CacheWriter, path: str, prefix: str) -> None:
    """Store X ``(32, 32, 3, N)`` as ``(N, 3, 32, 32)`` and y (1 to 10, 10 meaning 0) as int32."""
    mat = _loadmat(path)
    if "X" not in mat or "y" not in mat:
        raise ArchiveError(f"{path} has no X and y variables (found {sorted(k for k in mat if k[0] != '_')})")
    X, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.shape[3] != len(y):
        raise ArchiveError(f"{path}: X has shape {X.shape}, expected (32, 32, 3, {len(y)})")
    dest = out.create(f"{prefix}X_u8", (len(y), 3, 32, 32), np.uint8)
    for i in range(0, len(y), _CHUNK):
        dest[i:i + _CHUNK] = X[..., i:i + _CHUNK].transpose(3, 2, 0, 1)
    y = y.astype(np.int32)
    y[y == 10] = 0
    out.save(f"{prefix}y", y)


@fetch_and_convert_dataset(lambda: download_sources(FILES, "svhn"), lambda: CACHE)
def fetch_svhn_train_test(source_paths: list[str], target_path: str) -> str:
    """Fetch and convert the SVHN training and test sets on first use; return its cache.

    Parameters
    ----------
    **kwargs
        Passed to each source file's ``acquire``.

    Returns
    -------
    str or None
        The cache folder; ``None`` after printing why the data could not be had
        (``fetch_svhn_train_test.or_raise(**kwargs)`` raises that reason instead).
    """
    out = _cache.CacheWriter(target_path, "svhn")
    _write_split(out, source_paths[0], "train_")
    _write_split(out, source_paths[1], "test_")
    return out.finish()


@fetch_and_convert_dataset(lambda: download_sources(EXTRA_FILES, "svhn"), lambda: EXTRA_CACHE)
def fetch_svhn_extra(source_paths: list[str], target_path: str) -> str:
    """Fetch and convert the SVHN extra set on first use; return its cache.

    Parameters
    ----------
    **kwargs
        Passed to each source file's ``acquire``.

    Returns
    -------
    str or None
        The cache folder; ``None`` after printing why the data could not be had
        (``fetch_svhn_extra.or_raise(**kwargs)`` raises that reason instead).
    """
    out = _cache.CacheWriter(target_path, "svhn-extra")
    _write_split(out, source_paths[0], "")
    return out.finish()


def delete_cache() -> None:
    """Delete the converted SVHN caches (training/test and extra)."""
    delete_dataset_cache(CACHE, EXTRA_CACHE)


class SVHN(ImageSplits):
    """SVHN training (73,257) and test (26,032) images, ``(N, 3, 32, 32)`` uint8, labels 0-9.

    Attributes are those of :class:`~batchup.datasets.mnist.MNISTBase`.
    Digit 0, stored as 10 in the source, is label 0.

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
    >>> from batchup.datasets import svhn
    >>> ds = svhn.SVHN(n_val=10000)  # doctest: +SKIP
    >>> ds.train_X.shape  # doctest: +SKIP
    (63257, 3, 32, 32)
    """

    def __init__(self, n_val: Any = 10000, val_lower: float = 0.0, val_upper: float = 1.0, **kwargs: Any) -> None:
        self._set_splits(open_cache(fetch_svhn_train_test, "SVHN", **kwargs), n_val, val_lower, val_upper)


class SVHNExtra(SplitDataset):
    """The 531,131 extra SVHN images, with no split: ``X_u8``, ``y`` and the float32 view ``X``.

    :meth:`source` serves the single split ``'all'``.

    Parameters
    ----------
    val_lower, val_upper : float, default 0.0 and 1.0
        The values pixel 0 and 255 map to in the float32 view.
    **kwargs
        Passed to the source file's ``acquire``.

    Raises
    ------
    RuntimeError
        If the data cannot be fetched; ``__cause__`` holds the underlying error.
    """

    splits = ("all",)

    def __init__(self, val_lower: float = 0.0, val_upper: float = 1.0, **kwargs: Any) -> None:
        arrays = open_cache(fetch_svhn_extra, "SVHN extra", **kwargs)
        self.X_u8 = arrays["X_u8"]
        self.y = np.asarray(arrays["y"], dtype=np.int32)
        self.X = ImageArrayUInt8ToFloat32(self.X_u8, val_lower, val_upper)

    def _split_arrays(self, split: str, uint8: bool) -> list[Any]:
        return [self.X_u8 if uint8 else self.X, self.y]
