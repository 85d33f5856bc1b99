"""Progress bars for loops over batches.

Any tqdm-like callable can be passed as ``progress_iter_func``; it is called
once as ``progress_iter_func(iterable, total=n_batches, leave=False)``.
``progress=True`` builds a ``tqdm.auto.tqdm`` bar counting batches.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

__all__ = ["wrap_progress"]


def wrap_progress(batches: Iterable, total: Any, progress_iter_func: Any = None, progress: Any = False) -> Iterable:
    """Wrap ``batches`` in a progress bar if one was asked for.

    Parameters
    ----------
    batches : iterable
        The batch iterator.
    total : int or None
        Number of batches expected (the bar's total).
    progress_iter_func : callable, optional
        A tqdm-compatible callable; takes precedence over ``progress``.
    progress : bool or str, default False
        ``True`` shows a tqdm bar with unit "batch"; a string also sets its
        description.

    Returns
    -------
    iterable
        ``batches`` itself when no bar was asked for, otherwise the progress
        wrapper, which yields the same batches.
    """
    if progress_iter_func is not None:
        return progress_iter_func(batches, total=total, leave=False)
    if not progress:
        return batches
    from tqdm.auto import tqdm  # imported lazily: tqdm is needed only for bars

    options: dict = {"total": total, "unit": "batch", "leave": False}
    if isinstance(progress, str):
        options["desc"] = progress
    if "TQDM_DISABLE" not in os.environ:
        options["disable"] = None  # hide the bar when the output is not a terminal
    return tqdm(batches, **options)
