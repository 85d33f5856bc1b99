"""What every framework adapter shares: seeds, batch structure, lazy imports.

An adapter shows one batchup source to a framework as "epochs of batches"
(see :class:`~batchup.adapters._stream.EpochStream`). Its ``shuffle``
becomes one int seed, picked once where the adapter is built
(:func:`resolve_seed`), so every copy of the adapter (a Keras worker process,
a torch DataLoader worker, another rank) computes the same order on its own;
epoch ``e`` is then exactly ``source.batch_iterator(shuffle=seed, epoch=e)``.
"""
from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Iterator

import numpy as np

from batchup import _rng
from batchup._checks import is_int, positive_int
from batchup._optional import import_optional
from batchup.sources import AbstractDataSource, coerce_data_source

__all__ = [
    "apply_structure",
    "as_source",
    "check_structure",
    "map_leaves",
    "require",
    "resolve_seed",
    "strided",
]


def require(module: str, extra: str, adapter: str) -> Any:
    """Import and return ``module``; if it is missing, say which extra installs it.

    Raises
    ------
    ImportError
        Naming ``pip install batchup[<extra>]``, with the original error as cause.
    """
    try:
        return import_optional(module, extra, adapter)
    except ImportError as err:
        cause = err.__cause__
        missing = getattr(cause, "name", None) or ""
        if module == "keras" and missing.startswith("tensorflow") and "KERAS_BACKEND" not in os.environ:
            raise ImportError(
                f"{adapter} imports Keras, which tried to load its default TensorFlow backend: set "
                "KERAS_BACKEND=jax (or torch) before Python starts, or install TensorFlow with "
                "pip install batchup[tf]"
            ) from cause
        raise


def resolve_seed(shuffle: Any, name: str = "shuffle") -> int | None:
    """Return the int seed an adapter shuffles with, or ``None`` for in order.

    ``None``/``False`` keep the order; an int is the seed; ``True`` draws a
    fresh seed from OS entropy once (so copies of the adapter in other
    processes still agree); a ``RandomState`` or ``Generator`` is drawn from
    once to pick the seed.

    Raises
    ------
    TypeError
        For any other kind of value.
    ValueError
        For an int outside ``[0, 2**32 - 1]``.
    """
    if shuffle is None or shuffle is False or (isinstance(shuffle, np.bool_) and not shuffle):
        return None
    if shuffle is True or isinstance(shuffle, np.bool_):
        return _rng.fresh_seed()
    if is_int(shuffle):
        if not 0 <= shuffle <= _rng.SEED_MAX:
            raise ValueError(f"{name}: an int seed must be in [0, {_rng.SEED_MAX}], got {shuffle!r}")
        return int(shuffle)
    if isinstance(shuffle, np.random.RandomState):
        return int(shuffle.randint(0, _rng.SEED_MAX, dtype=np.int64))
    if isinstance(shuffle, np.random.Generator):
        return int(shuffle.integers(0, _rng.SEED_MAX))
    raise TypeError(
        f"{name} must be None/False (in order), an int seed, True (a fresh seed) or a "
        f"RandomState/Generator to draw a seed from; got {shuffle!r}"
    )


def as_source(source: Any, name: str = "source") -> AbstractDataSource:
    """Return ``source`` as a data source (a list of arrays becomes an ArrayDataSource)."""
    if isinstance(source, AbstractDataSource):
        return source
    if isinstance(source, (list, tuple)):
        return coerce_data_source(list(source))
    raise TypeError(
        f"{name} must be a batchup data source or a list of arrays, got {type(source).__name__}"
    )


def strided(iterable: Any, start: int, step: int) -> Iterator:
    """Yield ``(k, item)`` for the items at positions ``start, start + step, ...``."""
    return itertools.islice(enumerate(iterable), start, None, step)


def check_structure(structure: Any) -> Any:
    """Validate a structure template: nested tuples, lists and dicts of int positions.

    Raises
    ------
    TypeError
        For a leaf that is not an int, or a dict key that is not a string.
    ValueError
        For a negative position.
    """
    if structure is None:
        return None

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise TypeError(f"structure{path}: dict keys must be strings (input names), got {key!r}")
                visit(value, f"{path}[{key!r}]")
        elif isinstance(node, (tuple, list)):
            for i, value in enumerate(node):
                visit(value, f"{path}[{i}]")
        elif is_int(node):
            if node < 0:
                raise ValueError(f"structure{path}: positions must be >= 0, got {node}")
        else:
            raise TypeError(
                f"structure{path}: leaves must be int positions in the flat batch tuple, got {node!r}"
            )

    visit(structure, "")
    return structure


def apply_structure(batch: Any, structure: Any) -> Any:
    """Rearrange a flat batch tuple into ``structure`` (``None`` keeps the batch).

    Each int leaf of ``structure`` is replaced by that element of ``batch``;
    tuples stay tuples, lists become tuples (frameworks treat lists as data),
    dicts stay dicts.

    Examples
    --------
    >>> apply_structure(("a", "b", "y"), ({"first": 0, "second": 1}, 2))
    ({'first': 'a', 'second': 'b'}, 'y')
    """
    if structure is None:
        return batch
    flat = batch if isinstance(batch, (tuple, list)) else (batch,)

    def build(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: build(value) for key, value in node.items()}
        if isinstance(node, (tuple, list)):
            return tuple(build(value) for value in node)
        if node >= len(flat):
            raise IndexError(
                f"structure refers to position {node} but the batch holds {len(flat)} arrays"
            )
        return flat[node]

    return build(structure)


def map_leaves(fn: Callable, tree: Any) -> Any:
    """Apply ``fn`` to every leaf of nested tuples, lists and dicts, keeping the nesting."""
    if isinstance(tree, dict):
        return {key: map_leaves(fn, value) for key, value in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(map_leaves(fn, value) for value in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_leaves(fn, value) for value in tree)
    return fn(tree)


def batch_size_value(batch_size: Any) -> int:
    """Return ``batch_size`` as a positive int (TypeError/ValueError naming it otherwise)."""
    return positive_int("batch_size", batch_size)
