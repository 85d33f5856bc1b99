"""Shared helpers for sources built from several member sources."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from batchup import _rng
from batchup.samplers.plan import PlanOptions
from batchup.sources.base import AbstractDataSource

__all__ = ["check_flag", "check_members", "member_kwargs", "member_options", "member_plans"]


def check_members(name: str, datasets: Any) -> list:
    """Return ``datasets`` as a non-empty list after checking every member is a data source.

    Raises
    ------
    TypeError
        If ``datasets`` is not a list or tuple, or a member is not a data source.
    ValueError
        If ``datasets`` is empty (a source with no members would yield empty batches forever).
    """
    if not isinstance(datasets, (list, tuple)):
        raise TypeError(f"{name} must be a list of data sources, got {type(datasets).__name__}")
    if not datasets:
        raise ValueError(f"{name} must contain at least one data source, got an empty {type(datasets).__name__}")
    for i, d in enumerate(datasets):
        if not isinstance(d, AbstractDataSource):
            raise TypeError(f"{name}[{i}] must be a data source, got {type(d).__name__}")
    return list(datasets)


def check_flag(name: str, value: Any) -> bool:
    """Return ``value`` as a bool; TypeError unless it is one (``"no"`` is not False)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")


def member_options(options: PlanOptions, count: int) -> list:
    """Return the plan options for each of ``count`` members.

    Every member gets the same options, except that an int seed becomes an
    independent child seed per member, so that members are shuffled
    independently yet reproducibly. An RNG object is shared, as in BatchUp 0.2.
    """
    key = options.shuffle
    if isinstance(key, _rng.SeedKey):
        return [dataclasses.replace(options, shuffle=key.child(i)) for i in range(count)]
    return [options] * count


def member_kwargs(kwargs: dict, count: int) -> Sequence[dict]:
    """Return the keyword arguments for each of ``count`` members (sources that are not random access).

    An int seed becomes a child seed per member, as in :func:`member_options`.
    """
    shuffle = kwargs.get("shuffle")
    rng = _rng.resolve_shuffle(shuffle)
    if isinstance(rng, _rng.SeedKey):
        return [dict(kwargs, shuffle=rng.child(i)) for i in range(count)]
    return [kwargs] * count


def member_plans(datasets: list, batch_size: Any, options: PlanOptions) -> tuple:
    """Return ``(plans, endless)``: every member's plan for ``options`` and which members never end.

    An endless member (``repeats=-1``) of a finite composite or choice has a
    single, endless pass: its plan is pass 0's, and the caller continues it
    where the earlier passes of the composite left it (``epoch`` selects the
    composite's pass, not the endless member's).
    """
    plans, endless = [], []
    for d, o in zip(datasets, member_options(options, len(datasets))):
        first = d._plan(batch_size, dataclasses.replace(o, epoch=0)) if o.epoch else None
        probe = first if first is not None else d._plan(batch_size, o)
        never_ends = probe.num_batches is None and probe.num_samples == np.inf
        plans.append(probe if (never_ends or first is None) else d._plan(batch_size, o))
        endless.append(never_ends)
    return plans, endless
