"""Declared batch structures: nested tuples and lists of ``(column, encoder)`` pairs.

A structure says what one output of a batch looks like. A *leaf* names the
column(s) it reads and the pre-fitted encoder applied to them; tuples and
lists group leaves and are kept in the output, so a model with two inputs
can be fed ``[x1, x2]`` and one with a single input a bare array.

Leaf spellings:

- ``"col"`` -- the raw values of one column (shorthand for ``("col", None)``);
- ``("col", encoder)`` -- ``encoder.transform`` applied to the column;
- ``(["a", "b"], encoder)`` -- several columns passed together, as a 2-D
  input, to one encoder (``None`` stacks the raw columns side by side).

A two-element tuple is a leaf when its second item is ``None`` or an object
that is not a string, tuple or list; otherwise it is a group.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from batchup._checks import is_int

__all__ = ["Leaf", "leaves", "map_structure", "parse_structure"]


@dataclass(frozen=True)
class Leaf:
    """One output of a batch: ``columns`` fed to ``encoder``.

    :func:`parse_structure` builds it; each parameter is kept as the
    attribute of the same name (the object is frozen).

    Parameters
    ----------
    columns : tuple
        The column names (or positions) the leaf reads.
    encoder : object or None
        A pre-fitted encoder with ``transform``, or ``None`` for the raw values.
    multi : bool
        True when the columns were given as a list: the encoder receives a
        2-D input even for a single column.
    where : str
        Where in the structure the leaf sits (``x_structure[1]``), for messages.
    """

    columns: tuple
    encoder: Any
    multi: bool
    where: str

    @property
    def label(self) -> str:
        """The column spelling as the user wrote it, for messages."""
        return repr(list(self.columns)) if self.multi else repr(self.columns[0])


def _is_name(x: Any) -> bool:
    return isinstance(x, str) or is_int(x)


def _is_names(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(_is_name(c) for c in x)


def parse_structure(spec: Any, where: str = "x_structure") -> Any:
    """Return ``spec`` with every leaf replaced by a :class:`Leaf`.

    Parameters
    ----------
    spec : str, int, tuple or list
        A structure in the spellings of the module docstring.
    where : str, default "x_structure"
        The argument's name, for messages (nested leaves add ``[i]``).

    Returns
    -------
    Leaf, tuple or list
        The same nesting, with :class:`Leaf` objects as leaves.

    Raises
    ------
    TypeError
        If an element is neither a column name, a ``(column, encoder)`` pair
        nor a tuple/list, or if an encoder has no ``transform`` method.
    ValueError
        If a group is empty.

    Examples
    --------
    >>> parse_structure([("a", None), "b"])  # doctest: +ELLIPSIS
    [Leaf(columns=('a',), encoder=None, multi=False, ...), Leaf(columns=('b',), ...)]
    """
    if _is_name(spec):
        return Leaf((spec,), None, False, where)
    if isinstance(spec, tuple) and len(spec) == 2 and not isinstance(spec[1], (str, tuple, list)):
        cols, enc = spec
        if _is_name(cols):
            return Leaf((cols,), _check_encoder(enc, repr(cols), where), False, where)
        if _is_names(cols):
            return Leaf(tuple(cols), _check_encoder(enc, repr(list(cols)), where), True, where)
        raise TypeError(
            f"{where}: a (column, encoder) pair needs a column name or a list of names first, "
            f"got {cols!r}"
        )
    if isinstance(spec, (tuple, list)):
        if not spec:
            raise ValueError(f"{where}: an empty {type(spec).__name__} declares no output")
        parsed = [parse_structure(s, f"{where}[{i}]") for i, s in enumerate(spec)]
        return parsed if isinstance(spec, list) else tuple(parsed)
    raise TypeError(
        f"{where}: expected a column name, a (column, encoder) pair or a tuple/list of them, "
        f"got {spec!r} of type {type(spec).__name__}"
    )


def _check_encoder(enc: Any, cols: str, where: str) -> Any:
    if enc is not None and not callable(getattr(enc, "transform", None)):
        raise TypeError(
            f"{where}: the encoder for column {cols} has no transform method: {enc!r} "
            "(pass a pre-fitted encoder such as sklearn's LabelEncoder, or None for raw values)"
        )
    return enc


def map_structure(fn: Callable[[Leaf], Any], parsed: Any) -> Any:
    """Apply ``fn`` to every leaf, keeping tuples and lists as they are.

    Parameters
    ----------
    fn : callable
        Called with each :class:`Leaf`.
    parsed : Leaf, tuple or list
        A structure from :func:`parse_structure`.

    Returns
    -------
    object
        ``fn(leaf)`` for a leaf, else the same nesting of tuples and lists
        holding ``fn``'s results.
    """
    if isinstance(parsed, Leaf):
        return fn(parsed)
    out = [map_structure(fn, p) for p in parsed]
    return out if isinstance(parsed, list) else tuple(out)


def leaves(parsed: Any) -> list:
    """Return the leaves of a parsed structure, depth first.

    Parameters
    ----------
    parsed : Leaf, tuple or list
        A structure from :func:`parse_structure`.

    Returns
    -------
    list of Leaf
        Every leaf, in the order the outputs appear.
    """
    if isinstance(parsed, Leaf):
        return [parsed]
    return [leaf for p in parsed for leaf in leaves(p)]
