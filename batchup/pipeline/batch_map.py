"""Apply a function to every batch and gather the results.

``batch_map_concat`` concatenates per-sample results (predictions in one
line); ``batch_map_mean`` averages per-batch sums over samples (mean loss
and error rate). Both accept any iterable of batches.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Iterable

import numpy as np

from batchup.pipeline.progress import wrap_progress
from batchup.sources._batches import batch_length

__all__ = ["batch_map_concat", "batch_map_mean"]


def _batches(batch_iter: Iterable, n_batches: Any, progress_iter_func: Any, progress: Any) -> Iterable:
    total = n_batches
    if total is None:
        fn = getattr(batch_iter, "remaining", None)
        total = fn() if fn is not None else None
    it = wrap_progress(batch_iter, total, progress_iter_func, progress)
    if n_batches is None:
        yield from it
        return
    if n_batches <= 0:
        return
    count = 0
    for batch in it:
        yield batch
        count += 1
        if count >= n_batches:
            break


def _args(batch: Any, prepend_args: Any) -> tuple:
    if prepend_args is None:
        return tuple(batch)
    if not isinstance(prepend_args, tuple):
        raise TypeError(f"prepend_args must be a tuple, got {type(prepend_args).__name__}")
    return prepend_args + tuple(batch)


def batch_map_concat(
    func: Callable,
    batch_iter: Iterable,
    progress_iter_func: Any = None,
    n_batches: Any = None,
    prepend_args: Any = None,
    *,
    progress: Any = False,
) -> Any:
    """Apply ``func`` to each batch and concatenate its results along axis 0.

    Parameters
    ----------
    func : callable
        Called as ``func(*prepend_args, *batch)``; returns ``None`` (skipped),
        an array, or a tuple of arrays with one row per sample.
    batch_iter : iterable
        The batches.
    progress_iter_func : callable, optional
        A tqdm-like progress wrapper, called as ``f(it, total=..., leave=False)``.
    n_batches : int, optional
        Process at most this many batches and never fetch more, so one
        iterator can be consumed in chunks; ``0`` processes nothing.
    prepend_args : tuple, optional
        Arguments passed before the batch's arrays.
    progress : bool or str, default False
        Keyword-only: show a tqdm bar counting batches.

    Returns
    -------
    tuple of ndarray or None
        One concatenated array per output of ``func``; ``None`` if no batch
        produced a result (BatchUp 0.2 behaviour).

    Raises
    ------
    TypeError
        If ``func`` returns something other than ``None``, an array or a tuple.

    Examples
    --------
    >>> import numpy as np
    >>> batches = [(np.arange(3),), (np.arange(3, 5),)]
    >>> batch_map_concat(lambda x: x * 2, batches)
    (array([0, 2, 4, 6, 8]),)
    """
    results: list = []
    for batch in _batches(batch_iter, n_batches, progress_iter_func, progress):
        out = func(*_args(batch, prepend_args))
        if out is None:
            continue
        if isinstance(out, np.ndarray):
            out = (out,)
        elif not isinstance(out, tuple):
            raise TypeError(
                f"func must return None, an array or a tuple of arrays, got {type(out).__name__}"
            )
        results.append(out)
    if not results:
        return None
    return tuple(np.concatenate([r[j] for r in results], axis=0) for j in range(len(results[0])))


def _as_values(out: Any) -> Any:
    if out is None:
        return None
    if isinstance(out, (tuple, list)):
        return tuple(out)
    return (out,)


def _check_number(value: Any, j: int) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"result {j} of func is an array of dtype {value.dtype}, not numbers")
        return value
    if isinstance(value, (numbers.Number, np.number)) and not isinstance(value, (bool, np.bool_)):
        return value
    raise TypeError(
        f"result {j} of func must be a number or an array, got {type(value).__name__}"
    )


def batch_map_mean(
    func: Callable,
    batch_iter: Iterable,
    progress_iter_func: Any = None,
    sum_axis: Any = None,
    n_batches: Any = None,
    prepend_args: Any = None,
    *,
    progress: Any = False,
) -> Any:
    """Apply ``func`` to each batch and return the mean of its results per sample.

    Parameters
    ----------
    func : callable
        Called as ``func(*prepend_args, *batch)``; returns ``None``, a number,
        an array, or a tuple/list of them. Without ``sum_axis`` these are
        **sums over the batch** (e.g. the summed loss).
    batch_iter : iterable
        The batches.
    progress_iter_func : callable, optional
        A tqdm-like progress wrapper.
    sum_axis : int or tuple of int, optional
        Sum each returned array over these axes first, so ``func`` may return
        per-sample values.
    n_batches : int, optional
        Process at most this many batches (never fetching more).
    prepend_args : tuple, optional
        Arguments passed before the batch's arrays.
    progress : bool or str, default False
        Keyword-only: show a tqdm bar counting batches.

    Returns
    -------
    tuple or None
        ``float64`` means (scalars or arrays), one per output; ``None`` if no
        batch produced a result.

    Notes
    -----
    Every processed batch counts towards the denominator (its length as
    measured on the batch itself), even when ``func`` returns ``None``.
    Results are accumulated in a float64 copy, so ``func`` may return a
    cached array safely.

    Examples
    --------
    >>> import numpy as np
    >>> batches = [(np.array([1.0, 2.0]),), (np.array([3.0]),)]
    >>> [float(m) for m in batch_map_mean(lambda x: [x.sum(), (x > 1).sum()], batches)]
    [2.0, 0.6666666666666666]
    """
    acc: list | None = None
    count = 0
    for batch in _batches(batch_iter, n_batches, progress_iter_func, progress):
        count += batch_length(batch)
        out = func(*_args(batch, prepend_args))
        if isinstance(out, str):
            raise TypeError("func must return numbers or arrays, got a str")
        values = _as_values(out)
        if values is None:
            continue
        values = [_check_number(v, j) for j, v in enumerate(values)]
        if sum_axis is not None:
            values = [v.sum(axis=sum_axis) if isinstance(v, np.ndarray) else v for v in values]
        if acc is None:
            acc = [np.array(v, dtype=np.float64) for v in values]
        else:
            if len(values) != len(acc):
                raise TypeError(
                    f"func returned {len(values)} results for one batch but {len(acc)} for an earlier one"
                )
            for a, v in zip(acc, values):
                a += v
    if acc is None:
        return None
    return tuple(a / count if a.ndim else np.float64(a / count) for a in acc)
