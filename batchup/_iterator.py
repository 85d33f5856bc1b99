"""The base classes of every batchup iterator.

A data source is reusable configuration with no cursor; the iterator it
returns is the only object that records progress. Every iterator is an
explicit class (never a generator function) so that its position can be
saved with :meth:`StatefulIterator.state_dict` and restored with
:meth:`StatefulIterator.load_state_dict`, the ``Stateful`` shape that
PyTorch tooling understands.

Most iterators wrap another one (a map over a source's batches, tensors
made from batches, a device prefetcher, a parallel prefetcher over an index
stream). :class:`WrappingIterator` holds what they share, in the manner of
torchdata's ``BaseNode``: ``len()``, ``remaining()`` and ``last_padding``
come from the wrapped iterator, and the state nests the wrapped iterator's
state under :attr:`WrappingIterator.INNER_KEY` beside the wrapper's own
fields, so that saving and restoring cannot drift apart.
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["StatefulIterator", "WrappingIterator", "check_state", "normalise", "remaining_of"]


class StatefulIterator:
    """Base class: ``__iter__`` returns ``self``; subclasses write ``__next__``.

    Subclasses that can be checkpointed override :meth:`state_dict` and
    :meth:`load_state_dict`. A state holds only ints, floats, strings, bools,
    ``None``, lists and dicts, so it survives a JSON round trip, and it keeps
    the same keys over the iterator's life.
    """

    #: Name stored under ``"kind"`` in the state, checked on restore.
    KIND = "iterator"

    def __iter__(self) -> StatefulIterator:
        return self

    def __next__(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def remaining(self) -> int | None:
        """Return the number of batches still to come, or ``None`` if endless or unknown.

        Returns
        -------
        int or None
            Batches left (also ``len(iterator)``); ``None`` for an endless
            iterator or one whose length cannot be known.
        """
        return None

    def __len__(self) -> int:
        left = self.remaining()
        if left is None:
            raise TypeError(f"{type(self).__name__} has no length: it is endless or its length is unknown")
        return left

    def state_dict(self) -> dict:
        """Return the iterator's position as a small JSON-serialisable dict.

        Returns
        -------
        dict
            The position (and the configuration it must be restored into), as
            ints, floats, strings, bools, ``None``, lists and dicts.

        Raises
        ------
        TypeError
            If this iterator cannot be checkpointed (the base class's answer).
        """
        raise TypeError(f"{type(self).__name__} cannot be checkpointed")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Move this (fresh) iterator to the position recorded in ``state``.

        Parameters
        ----------
        state : mapping
            A dict returned by :meth:`state_dict` of an iterator built the same
            way (same source, batch size and options), possibly after a JSON
            round trip.

        Raises
        ------
        TypeError
            If this iterator cannot be restored (the base class's answer).
        ValueError
            If ``state`` is malformed or was taken from a differently built iterator.
        """
        raise TypeError(f"{type(self).__name__} cannot be restored from a state")


def remaining_of(it: Any) -> int | None:
    """Return ``it.remaining()`` if ``it`` has it, else ``None`` (unknown)."""
    fn = getattr(it, "remaining", None)
    return fn() if fn is not None else None


class WrappingIterator(StatefulIterator):
    """An iterator that wraps another; a template for length, padding and nested state.

    Subclasses implement :meth:`__next__` (usually ``self._transform(next(self._inner))``)
    and, if they keep fields of their own, :meth:`_own_state` and
    :meth:`_load_own_state`. Those that hold batches taken from the wrapped
    iterator but not yet handed out (prefetchers) report them with
    :meth:`_held` and save the wrapped iterator's state from *before* them in
    :meth:`_inner_state`, so a checkpoint records what the consumer has
    received, never what was prepared ahead.
    """

    #: The key under which the wrapped iterator's state is nested.
    INNER_KEY = "inner"

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __next__(self) -> Any:
        return self._transform(next(self._inner))

    def _transform(self, batch: Any) -> Any:
        return batch

    def _held(self) -> int:
        """Return the number of batches taken from the wrapped iterator and not yet handed out."""
        return 0

    @property
    def last_padding(self) -> Any:
        """For a rank-sharded iterator: the mask of wrap-around duplicates in the last batch, else None."""
        return getattr(self._inner, "last_padding", None)

    def remaining(self) -> int | None:
        left = remaining_of(self._inner)
        return None if left is None else left + self._held()

    # -- state ------------------------------------------------------------------------
    def _inner_state(self) -> Any:
        fn = getattr(self._inner, "state_dict", None)
        if fn is None:
            raise TypeError(f"cannot checkpoint: the wrapped iterator {self._inner!r} has no state_dict()")
        return fn()

    def _load_inner_state(self, state: Any) -> None:
        fn = getattr(self._inner, "load_state_dict", None)
        if fn is None:
            raise TypeError(f"cannot restore: the wrapped iterator {self._inner!r} has no load_state_dict()")
        fn(state)

    def _own_state(self) -> dict:
        """Return the wrapper's own fields (JSON values); the keys never change."""
        return {}

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        """Check and restore the wrapper's own fields (called before the wrapped iterator is restored)."""

    def state_dict(self) -> dict:
        state = {"kind": self.KIND, self.INNER_KEY: self._inner_state()}
        state.update(self._own_state())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        where = type(self).__name__
        check_state(state, {"kind": self.KIND}, where)
        for key in (self.INNER_KEY, *self._own_state()):
            if key not in state:
                raise ValueError(f"{where}: malformed state, the field {key!r} is missing")
        self._load_own_state(state)
        self._load_inner_state(state[self.INNER_KEY])


def check_state(state: Any, expected: Mapping[str, Any], where: str, _path: str = "") -> None:
    """Raise ValueError unless ``state`` is a dict whose fields match ``expected``.

    ``expected`` maps field names to the values this iterator was built with
    (its kind, batch size, length, seed, ...); a state taken from another
    pipeline differs in at least one of them, and the message names that
    field (``plan.seed``, say, for a nested field).
    """
    if not isinstance(state, Mapping):
        what = f"the field {_path[:-1]!r}" if _path else "a state"
        raise ValueError(f"{where}: {what} must be a dict, got {type(state).__name__}")
    for key, want in expected.items():
        name = f"{_path}{key}"
        if key not in state:
            raise ValueError(f"{where}: malformed state, the field {name!r} is missing")
        got = state[key]
        if isinstance(want, Mapping):
            check_state(got, want, where, f"{name}.")
            continue
        if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)) and len(got) != len(want):
            raise ValueError(
                f"{where}: the state does not fit this iterator: {name} has {len(got)} entries in the "
                f"state but {len(want)} here"
            )
        if normalise(got) != normalise(want):
            raise ValueError(
                f"{where}: the state does not fit this iterator: {name} is {got!r} in the "
                f"state but {want!r} here"
            )


def normalise(value: Any) -> Any:
    """Return ``value`` with tuples as lists (as after a JSON round trip), for comparing states."""
    if isinstance(value, (tuple, list)):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value
