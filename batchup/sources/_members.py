"""Shared helpers for sources built from several member sources."""
from __future__ import annotations

from typing import Any, Sequence

from batchup import _rng
from batchup.sources.base import AbstractDataSource

__all__ = ["check_members", "member_kwargs"]


def check_members(name: str, datasets: Any) -> list:
    """Return ``datasets`` as a list after checking every member is a data source."""
    if not isinstance(datasets, (list, tuple)):
        raise TypeError(f"{name} must be a list of data sources, got {type(datasets).__name__}")
    for i, d in enumerate(datasets):
        if not isinstance(d, AbstractDataSource):
            raise TypeError(f"{name}[{i}] must be a data source, got {type(d).__name__}")
    return list(datasets)


def member_kwargs(kwargs: dict, count: int) -> Sequence[dict]:
    """Return the keyword arguments for each of ``count`` members.

    Every member gets the same arguments, except that an int seed becomes an
    independent child seed per member, so that members are shuffled
    independently yet reproducibly. An RNG object is shared, as in BatchUp 0.2.
    """
    shuffle = kwargs.get("shuffle")
    rng = _rng.resolve_shuffle(shuffle)
    if isinstance(rng, _rng.SeedKey):
        return [dict(kwargs, shuffle=rng.child(i)) for i in range(count)]
    return [kwargs] * count
