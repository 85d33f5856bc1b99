"""The base class of every batchup iterator.

A data source is reusable configuration with no cursor; the iterator it
returns is the only object that records progress. Every iterator is an
explicit class (never a generator function) so that its position can be
saved with :meth:`StatefulIterator.state_dict` and restored with
:meth:`StatefulIterator.load_state_dict`, the ``Stateful`` shape that
PyTorch tooling understands.
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["StatefulIterator", "check_state"]


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

    def state_dict(self) -> dict:
        """Return the iterator's position as a small JSON-serialisable dict."""
        raise TypeError(f"{type(self).__name__} cannot be checkpointed")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Move this (fresh) iterator to the position recorded in ``state``."""
        raise TypeError(f"{type(self).__name__} cannot be restored from a state")


def check_state(state: Any, expected: Mapping[str, Any], where: str) -> None:
    """Raise ValueError unless ``state`` is a dict whose fields match ``expected``.

    ``expected`` maps field names to the values this iterator was built with
    (its kind, batch size, length, ...); a state taken from another pipeline
    differs in at least one of them, and the message names that field.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"{where}: a state must be a dict, got {type(state).__name__}")
    for key, want in expected.items():
        if key not in state:
            raise ValueError(f"{where}: malformed state, the field {key!r} is missing")
        got = state[key]
        if _normalise(got) != _normalise(want):
            raise ValueError(
                f"{where}: the state does not fit this iterator: {key} is {got!r} in the "
                f"state but {want!r} here"
            )


def _normalise(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value
