"""Fashion-MNIST: 70,000 28x28 grey images of clothing in 10 classes, MNIST's format.

H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017 (MIT
licence). The files share MNIST's names, so they are kept apart under
``temp/fashion-mnist`` (and ``<mirror>/fashion-mnist``).
"""
from __future__ import annotations

from typing import Any

from batchup.datasets._base import download_sources, hosted, open_cache
from batchup.datasets.dataset import delete_dataset_cache, fetch_and_convert_dataset
from batchup.datasets.mnist import MNISTBase, convert_idx

__all__ = ["CLASS_NAMES", "FILES", "HOSTS", "FashionMNIST", "delete_cache", "fetch_fashion_mnist"]

#: Where the four files are, tried in this order: the copy Keras downloads (Google's bucket), then
#: Zalando's own S3 website (plain http; torchvision and TensorFlow Datasets use it).
HOSTS = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
#: The source files: training images, training labels, test images, test labels.
FILES = (
    hosted("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", *HOSTS),
    hosted("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", *HOSTS),
    hosted("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", *HOSTS),
    hosted("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", *HOSTS),
)
#: Name of the converted cache.
CACHE = "fashion-mnist"
#: The names of labels 0 to 9.
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@fetch_and_convert_dataset(lambda: download_sources(FILES, "fashion-mnist"), lambda: CACHE)
def fetch_fashion_mnist(source_paths: list[str], target_path: str) -> str:
    """Fetch and convert Fashion-MNIST on first use; return its cache.

    Parameters
    ----------
    **kwargs
        Passed to each source file's ``acquire``.

    Returns
    -------
    str or None
        The cache folder; ``None`` after printing why the data could not be had
        (``fetch_fashion_mnist.or_raise(**kwargs)`` raises that reason instead).
    """
    return convert_idx(source_paths, target_path, "fashion-mnist")


def delete_cache() -> None:
    """Delete the converted Fashion-MNIST cache."""
    delete_dataset_cache(CACHE)


class FashionMNIST(MNISTBase):
    """Fashion-MNIST, with the attributes of :class:`~batchup.datasets.mnist.MNISTBase` and ``class_names``.

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
    >>> from batchup.datasets import fashion_mnist
    >>> ds = fashion_mnist.FashionMNIST(n_val=10000)  # doctest: +SKIP
    >>> ds.class_names[ds.test_y[0]]  # doctest: +SKIP
    'Ankle boot'
    """

    def __init__(self, n_val: Any = 10000, val_lower: float = 0.0, val_upper: float = 1.0, **kwargs: Any) -> None:
        self._set_splits(open_cache(fetch_fashion_mnist, "Fashion-MNIST", **kwargs), n_val, val_lower, val_upper)
        self.class_names = list(CLASS_NAMES)
