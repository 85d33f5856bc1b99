"""Reading the CIFAR python tarballs (shared by CIFAR-10 and CIFAR-100).

The tarball is extracted safely next to its temp file, each pickled batch is
loaded with the restricted unpickler (NumPy arrays only), and the extracted
folder is deleted afterwards, whatever happens.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from batchup._errors import ArchiveError
from batchup.datasets._archive import load_pickle, safe_extract

__all__ = ["Extracted", "field", "images", "labels", "read_batch"]


class Extracted:
    """Context manager: safely extract ``archive`` to ``<archive>.extracted`` and remove it on exit."""

    def __init__(self, archive: str) -> None:
        self.archive, self.dest = archive, archive + ".extracted"

    def __enter__(self) -> str:
        shutil.rmtree(self.dest, ignore_errors=True)  # left by a killed run
        return safe_extract(self.archive, self.dest)

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.dest, ignore_errors=True)


def read_batch(root: str, member: str, archive: str) -> dict[str, Any]:
    """Unpickle the batch ``member`` (e.g. ``cifar-10-batches-py/data_batch_1``) of the extracted archive."""
    path = os.path.join(root, *member.split("/"))
    if not os.path.isfile(path):
        raise ArchiveError(f"{archive} has no member {member!r}")
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise ArchiveError(f"{member} in {archive} holds a {type(batch).__name__}, expected a dict")
    return batch


def field(batch: dict[str, Any], key: str, member: str) -> Any:
    """Return ``batch[key]``, accepting str or bytes keys."""
    for k in (key, key.encode("latin-1")):
        if k in batch:
            return batch[k]
    raise ArchiveError(f"{member} has no {key!r} entry (keys: {sorted(map(str, batch))})")


def images(batch: dict[str, Any], member: str) -> np.ndarray:
    """Return the batch's images as ``(N, 3, 32, 32)`` uint8."""
    data = np.asarray(field(batch, "data", member))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ArchiveError(f"{member}: data has shape {data.shape} and dtype {data.dtype}, "
                           f"expected (N, 3072) uint8")
    return data.reshape(-1, 3, 32, 32)


def labels(batch: dict[str, Any], key: str, member: str, n: int, n_classes: int) -> np.ndarray:
    """Return the batch's labels ``key`` as int32, checked against ``n`` samples and ``n_classes``."""
    y = np.asarray(field(batch, key, member), dtype=np.int64).reshape(-1)
    if len(y) != n or (n and (y.min() < 0 or y.max() >= n_classes)):
        raise ArchiveError(f"{member}: {key} must hold {n} labels in [0, {n_classes}), got {len(y)} "
                           f"in [{y.min() if n else '-'}, {y.max() if n else '-'}]")
    return y.astype(np.int32)
