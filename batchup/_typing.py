"""Protocols for the shapes batchup relies on without asking for a base class.

A *random-access source* is any source whose ``is_random_access`` is True:
:class:`~batchup.sources.RandomAccessDataSource` and its subclasses, and the
sources built from random-access members (map, composite, choice), which
inherit only from :class:`~batchup.sources.AbstractDataSource`. Every driver
(the serial iterator, the worker pools, the framework adapters) makes a batch
through the same two calls, :class:`PlannedSource`; :func:`is_planned` tells
the type checker which sources have them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # typing.TypeGuard is Python 3.10+; annotations are not evaluated at run time
    from typing import TypeGuard

    from batchup.samplers.plan import BatchPlan, PlanOptions

__all__ = ["PlannedSource", "is_planned"]


class PlannedSource(Protocol):
    """A random-access source as the drivers use it: plan, then fetch batch by batch."""

    @property
    def is_random_access(self) -> bool:
        """Always True for these sources."""
        ...

    def _plan(self, batch_size: Any, options: PlanOptions) -> BatchPlan:
        """Return the plan for already validated options."""
        ...

    def fetch_batch(self, indices: Any, batch_number: int) -> Any:
        """Return the batch at absolute ``indices``, numbered ``batch_number`` in its plan."""
        ...


def is_planned(source: object) -> TypeGuard[PlannedSource]:
    """Return True if ``source`` is a random-access source (it then follows :class:`PlannedSource`)."""
    return bool(getattr(source, "is_random_access", False))
