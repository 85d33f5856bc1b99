"""Apply one pre-fitted encoder to one column (or group of columns) of a batch.

An encoder is called once per batch and leaf, on all the rows of the batch
at once, never row by row. How its input is shaped follows what the
encoder was fitted on, read from the attributes scikit-learn sets:

- fitted on a DataFrame (``feature_names_in_``): a DataFrame with the
  leaf's columns (so no feature-name warning);
- fitted on 2-D input (``n_features_in_``, e.g. ``StandardScaler``,
  ``OneHotEncoder``) or a leaf given as a list of columns: a 2-D array;
- anything else (``LabelEncoder``, ``LabelBinarizer``, your own): the 1-D
  column.

Sparse results (anything with ``toarray``) are made dense.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchup._checks import is_int
from batchup._optional import import_optional
from batchup.tables.structure import Leaf

__all__ = ["encode_leaf", "n_classes_of"]


def encode_leaf(leaf: Leaf, columns: Mapping[Any, np.ndarray], n: int) -> np.ndarray:
    """Return the encoded batch of ``leaf``; ``columns`` holds this batch's rows.

    Parameters
    ----------
    leaf : Leaf
        The output to make: its columns and encoder.
    columns : mapping of column name to numpy.ndarray
        The batch's rows of every column the structure reads.
    n : int
        The number of rows in the batch.

    Returns
    -------
    numpy.ndarray
        ``n`` rows: the raw column (or the columns side by side for a list
        leaf) without an encoder, else ``encoder.transform`` of them, made
        dense.

    Raises
    ------
    ValueError
        If the encoder returns a number of rows other than ``n``.
    """
    values = [columns[c] for c in leaf.columns]
    enc = leaf.encoder
    if enc is None:
        if leaf.multi:
            return np.column_stack(values) if n else np.zeros((0, len(values)))
        return values[0]
    try:
        out = enc.transform(_encoder_input(leaf, values))
    except Exception as err:
        note = getattr(err, "add_note", None)
        if note is not None:
            note(f"while {leaf.where} encoded column {leaf.label} with {type(enc).__name__}")
        raise
    if hasattr(out, "toarray"):
        out = out.toarray()
    out = np.asarray(out)
    if out.ndim == 0 or len(out) != n:
        got = "a scalar" if out.ndim == 0 else f"{len(out)} rows"
        raise ValueError(
            f"{leaf.where}: the encoder {type(enc).__name__} for column {leaf.label} returned {got} "
            f"for a batch of {n} rows; an encoder must return one row per input row"
        )
    return out


def _encoder_input(leaf: Leaf, values: list) -> Any:
    enc = leaf.encoder
    names = getattr(enc, "feature_names_in_", None)
    if names is not None:
        pd = import_optional("pandas", "pandas", f"the encoder for column {leaf.label} (fitted on a DataFrame)")
        return pd.DataFrame({c: v for c, v in zip(leaf.columns, values)})
    if leaf.multi or hasattr(enc, "n_features_in_"):
        return np.column_stack(values) if len(values[0]) else np.zeros((0, len(values)), dtype=values[0].dtype)
    return values[0]


def n_classes_of(encoder: Any) -> Any:
    """Return the number of categories an encoder knows, or None if it is not categorical.

    ``n_classes`` (an int attribute of your own encoder) wins; otherwise
    ``len(classes_)`` (``LabelEncoder``, ``LabelBinarizer``), or for
    ``categories_`` (``OneHotEncoder``, ``OrdinalEncoder``) the count of the
    single feature, or a tuple with one count per feature.

    Parameters
    ----------
    encoder : object or None
        A pre-fitted encoder (scikit-learn's or your own), or ``None``.

    Returns
    -------
    int, tuple of int or None
        The number of categories (one per feature for a multi-feature
        ``categories_``), or ``None`` for ``None`` and encoders that are not
        categorical.

    Examples
    --------
    >>> class Colours:
    ...     classes_ = ["red", "green", "blue"]
    >>> n_classes_of(Colours()), n_classes_of(None)
    (3, None)
    """
    if encoder is None:
        return None
    own = getattr(encoder, "n_classes", None)
    if is_int(own):
        return int(own)
    classes = getattr(encoder, "classes_", None)
    if classes is not None:
        return len(classes)
    cats = getattr(encoder, "categories_", None)
    if cats is not None:
        counts = tuple(len(c) for c in cats)
        return counts[0] if len(counts) == 1 else counts
    return None
