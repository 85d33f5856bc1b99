"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grey.

Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning
applied to document recognition", Proc. IEEE 86(11), 1998. The four gzip IDX
files are fetched from the first of :data:`HOSTS` that serves them (after
the mirror, when one is set), verified, and converted to a NumPy cache
``<data dir>/mnist``.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from typing import Any

import numpy as np

from batchup._errors import ArchiveError
from batchup.datasets import _cache
from batchup.datasets._base import ImageSplits, download_sources, hosted, open_cache
from batchup.datasets.dataset import delete_dataset_cache, fetch_and_convert_dataset

__all__ = ["FILES", "HOSTS", "MNIST", "MNISTBase", "delete_cache", "fetch_mnist", "read_idx"]

#: Where the four files are, tried in this order: the copies torchvision (PyTorch's S3), TensorFlow
#: Datasets (Google's CVDF bucket) and PaddlePaddle download, then Yann LeCun's original page, which
#: often refuses scripts. Every copy is checked against the same SHA-256.
HOSTS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://dataset.bj.bcebos.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
#: The source files: training images, training labels, test images, test labels.
FILES = (
    hosted("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", *HOSTS),
    hosted("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", *HOSTS),
    hosted("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", *HOSTS),
    hosted("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", *HOSTS),
)
#: Name of the converted cache (a folder in the batchup data directory).
CACHE = "mnist"


def read_idx(path: str, ndim: int) -> np.ndarray:
    """Return the uint8 array stored in the gzip IDX file ``path`` (``ndim`` 1 for labels, 3 for images).

    Parameters
    ----------
    path : str
        The ``.gz`` file.
    ndim : int
        The dimensions the file must hold.

    Returns
    -------
    numpy.ndarray
        The uint8 array, shaped as the header says.

    Raises
    ------
    ArchiveError
        If the file is truncated, not gzip, or not a uint8 IDX file of ``ndim`` dimensions.
    """
    try:
        with gzip.open(path, "rb") as f:
            magic = f.read(4)
            if len(magic) != 4 or magic[:3] != b"\x00\x00\x08" or magic[3] != ndim:
                raise ArchiveError(f"{path} is not a uint8 IDX file with {ndim} dimensions "
                                   f"(header {magic.hex()})")
            dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            data = f.read()
    except (OSError, EOFError, zlib.error, struct.error) as err:
        raise ArchiveError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    expected = int(np.prod(dims))
    if len(data) != expected:
        raise ArchiveError(f"{path} holds {len(data)} bytes of data, its header promises {expected}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def convert_idx(source_paths: list[str], target_path: str, dataset: str) -> str:
    """Convert the four IDX files (train images, train labels, test images, test labels) to a cache."""
    out = _cache.CacheWriter(target_path, dataset)
    for split, (images, labels) in (("train", source_paths[0:2]), ("test", source_paths[2:4])):
        X = read_idx(images, 3)
        y = read_idx(labels, 1)
        if len(X) != len(y):
            raise ArchiveError(f"{images} has {len(X)} images but {labels} has {len(y)} labels")
        out.save(f"{split}_X_u8", X.reshape(-1, 1, *X.shape[1:]))
        out.save(f"{split}_y", y.astype(np.int32))
    return out.finish()


@fetch_and_convert_dataset(lambda: download_sources(FILES, "mnist"), lambda: CACHE)
def fetch_mnist(source_paths: list[str], target_path: str) -> str:
    """Fetch and convert MNIST on first use; return its cache.

    Parameters
    ----------
    **kwargs
        Passed to each source file's ``acquire``.

    Returns
    -------
    str or None
        The cache folder; ``None`` after printing why the data could not be had
        (``fetch_mnist.or_raise(**kwargs)`` raises that reason instead).
    """
    return convert_idx(source_paths, target_path, "mnist")


def delete_cache() -> None:
    """Delete the converted MNIST cache (the next use converts again)."""
    delete_dataset_cache(CACHE)


class MNISTBase(ImageSplits):
    """MNIST-shaped data (``(N, 1, 28, 28)`` uint8 images, int32 labels) read from a cache.

    Parameters
    ----------
    h5_path : str
        The converted cache (the name is kept from BatchUp 0.2, whose caches
        were HDF5 files; batchup's are folders of ``.npy`` files).
    n_val : int or None, default 10000
        The last ``n_val`` training samples become the validation set;
        ``0`` or ``None`` leaves it empty.
    val_lower, val_upper : float, default 0.0 and 1.0
        The values pixel 0 and 255 map to in the float32 views.

    Attributes
    ----------
    train_X_u8, val_X_u8, test_X_u8 : numpy.ndarray
        uint8 images (memory-mapped, read-only).
    train_y, val_y, test_y : numpy.ndarray
        int32 labels.
    train_X, val_X, test_X : ImageArrayUInt8ToFloat32
        float32 views of the images.
    """

    def __init__(self, h5_path: str, n_val: Any = 10000, val_lower: float = 0.0, val_upper: float = 1.0) -> None:
        self._set_splits(_cache.load(h5_path), n_val, val_lower, val_upper)


class MNIST(MNISTBase):
    """The MNIST digits (downloaded and converted on first use).

    Attributes are those of :class:`MNISTBase`.

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
    ValueError, TypeError
        For a bad ``n_val``.

    Examples
    --------
    >>> from batchup.datasets import mnist
    >>> ds = mnist.MNIST(n_val=10000)  # doctest: +SKIP
    >>> ds.train_X.shape, ds.val_X.shape, ds.test_X.shape  # doctest: +SKIP
    ((50000, 1, 28, 28), (10000, 1, 28, 28), (10000, 1, 28, 28))
    >>> for X, y in ds.train_source().batch_iterator(64, shuffle=0):  # doctest: +SKIP
    ...     pass
    """

    def __init__(self, n_val: Any = 10000, val_lower: float = 0.0, val_upper: float = 1.0, **kwargs: Any) -> None:
        self._set_splits(open_cache(fetch_mnist, "MNIST", **kwargs), n_val, val_lower, val_upper)
