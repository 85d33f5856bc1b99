"""Ready-made loaders ("path -> array") for :class:`~batchup.arrays.FileArray`.

Each is a plain module-level function, so a ``FileArray`` that uses it can
be pickled to worker processes; ``functools.partial`` fixes options.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from batchup._optional import import_optional

__all__ = ["read_image", "read_npy"]


def read_npy(path: Any) -> np.ndarray:
    """Return the array stored in the ``.npy`` file at ``path`` (no pickles).

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``numpy.save``.

    Returns
    -------
    numpy.ndarray
        The array, read in full (an object array is refused, as it would
        need unpickling).

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(p, np.arange(3))
    >>> read_npy(p).tolist()
    [0, 1, 2]
    """
    return np.load(path, allow_pickle=False)


def read_image(path: Any, *, mode: str | None = None, dtype: Any = None) -> np.ndarray:
    """Return the image file at ``path`` as an array of shape ``(H, W)`` or ``(H, W, C)``.

    Parameters
    ----------
    path : str or os.PathLike
        An image in any format pillow reads (PNG, JPEG, ...).
    mode : str, optional
        Keyword-only. Convert to this pillow mode first (``"L"`` grey,
        ``"RGB"``, ...), so every image of a dataset has the same channels.
    dtype : dtype, optional
        Keyword-only. Cast to this dtype (pixels keep their 0..255 range).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` for one channel, ``(H, W, C)`` otherwise; ``uint8`` for
        8-bit images unless ``dtype`` says otherwise.

    Raises
    ------
    ImportError
        If pillow is not installed (``pip install batchup[images]``).

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.fromarray(np.full((2, 3), 7, dtype=np.uint8)).save(p)
    >>> img = read_image(p, mode="RGB", dtype=np.float32)
    >>> img.shape, img.dtype.name, float(img.max())
    ((2, 3, 3), 'float32', 7.0)
    """
    image_mod = import_optional("PIL.Image", "images", "read_image")
    with image_mod.open(path) as img:
        if mode is not None and img.mode != mode:
            img = img.convert(mode)
        arr = np.asarray(img)
    return arr if dtype is None else arr.astype(dtype)
