"""USPS handwritten digits: 9,298 16x16 grey images scaled to [0, 1].

J. J. Hull, "A database for handwritten text recognition research", IEEE
Trans. PAMI 16(5), 1994. The file is the HDF5 re-packaging published with
BatchUp (github.com/Britefury/usps_dataset); reading it needs h5py
(``pip install batchup[datasets]``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup._errors import ArchiveError
from batchup._optional import import_optional
from batchup.datasets import _cache
from batchup.datasets._base import SplitDataset, check_count, download_sources, hosted, open_cache, split_last
from batchup.datasets.dataset import delete_dataset_cache, fetch_and_convert_dataset

__all__ = ["FILES", "HOSTS", "USPS", "delete_cache", "usps_data"]

#: Where the file is, tried in this order: GitHub's raw file host directly, then the repository's
#: ``raw`` link (which redirects there).
HOSTS = (
    "https://raw.githubusercontent.com/Britefury/usps_dataset/master/",
    "https://github.com/Britefury/usps_dataset/raw/master/",
)
#: The source file.
FILES = (
    hosted("usps.h5", "ba768d9a9b11e79b31c1e40130647c4fc04e6afc1fb41a0d4b9f1176065482b4", *HOSTS),
)
CACHE = "usps"


def convert_usps(path: str, target_path: str) -> str:
    """Copy the arrays of the USPS HDF5 file (group ``/usps``) into the cache folder ``target_path``."""
    h5py = import_optional("h5py", "datasets", "USPS (reading its HDF5 file)")
    out = _cache.CacheWriter(target_path, "usps")
    try:
        with h5py.File(path, "r") as f:
            group = f["usps"] if "usps" in f else f
            for split in ("train", "test"):
                X = np.asarray(group[f"{split}_X"], dtype=np.float32)
                y = np.asarray(group[f"{split}_y"]).reshape(-1).astype(np.int32)
                if X.ndim == 2:
                    X = X.reshape(-1, 1, 16, 16)
                if X.shape[1:] != (1, 16, 16) or len(X) != len(y):
                    raise ArchiveError(f"{path}: {split}_X has shape {X.shape} for {len(y)} labels, "
                                       f"expected (N, 1, 16, 16)")
                out.save(f"{split}_X", X)
                out.save(f"{split}_y", y)
    except (OSError, KeyError) as err:
        raise ArchiveError(f"cannot read the USPS HDF5 file {path}: {err}") from err
    return out.finish()


@fetch_and_convert_dataset(lambda: download_sources(FILES, "usps"), lambda: CACHE)
def usps_data(source_paths: list[str], target_path: str) -> str:
    """Fetch and convert USPS on first use; return its cache.

    Parameters
    ----------
    **kwargs
        Passed to each source file's ``acquire``.

    Returns
    -------
    str or None
        The cache folder; ``None`` after printing why the data could not be had
        (``usps_data.or_raise(**kwargs)`` raises that reason instead).
    """
    return convert_usps(source_paths[0], target_path)


def delete_cache() -> None:
    """Delete the converted USPS cache."""
    delete_dataset_cache(CACHE)


class USPS(SplitDataset):
    """USPS digits: float32 images ``(N, 1, 16, 16)`` in [0, 1] (7,291 training, 2,007 test).

    Parameters
    ----------
    n_val : int or None, default 729
        The last ``n_val`` training samples become the validation set.
    **kwargs
        Passed to the source file's ``acquire``.

    Attributes
    ----------
    train_X, val_X, test_X : numpy.ndarray
        float32 images (there are no uint8 variants).
    train_y, val_y, test_y : numpy.ndarray
        int32 labels 0-9.

    Raises
    ------
    RuntimeError
        If the data cannot be fetched (BatchUp 0.2 returned an empty object);
        the message says why and ``__cause__`` holds the underlying error.

    Examples
    --------
    >>> from batchup.datasets import usps
    >>> ds = usps.USPS(n_val=729)  # doctest: +SKIP
    >>> ds.train_X.shape, ds.val_X.shape  # doctest: +SKIP
    ((6562, 1, 16, 16), (729, 1, 16, 16))
    """

    def __init__(self, n_val: Any = 729, **kwargs: Any) -> None:
        arrays = open_cache(usps_data, "USPS", **kwargs)
        train_y = np.asarray(arrays["train_y"], dtype=np.int32)
        n_val = check_count(n_val, len(train_y), "n_val")
        self.train_X, self.train_y, self.val_X, self.val_y = split_last(arrays["train_X"], train_y, n_val)
        self.test_X, self.test_y = arrays["test_X"], np.asarray(arrays["test_y"], dtype=np.int32)

    def _split_arrays(self, split: str, uint8: bool) -> list[Any]:
        if uint8:
            raise ValueError("USPS is stored as float32; it has no uint8 images (pass uint8=False)")
        return [getattr(self, f"{split}_X"), getattr(self, f"{split}_y")]
