"""Feed JAX training steps: batches put on devices ahead of use, and per-process shards.

* :func:`prefetch_to_device` keeps ``size`` batches already transferred to
  the devices while the current one is being used. In a multi-process run
  (``jax.process_count() > 1``) each process passes only its own rows and
  ``jax.make_array_from_process_local_data`` assembles the global array.
* :func:`process_shard` and :func:`local_batch_size` give each process its
  part of every epoch and its part of the global batch.

**Equal batch counts, or a deadlock.** Every jitted step over a global array
is a collective: if one process has one batch more than another, it waits
forever in that step (JAX ignores SIGTERM meanwhile). batchup's rank sharding
(``shard=process_shard()``) gives every process the same number of samples
per epoch (padding by wrap-around, or dropping the remainder), hence the
same number of batches with the same sizes; with ``drop_last=True`` every
batch also has the full size, which avoids recompiling for a short last batch
and keeps the batch divisible by the number of local devices.
JAX is imported only when one of these functions is called.
"""
from __future__ import annotations

import collections
from typing import Any

from batchup._checks import is_int, positive_int
from batchup._iterator import WrappingIterator
from batchup.adapters import _common
from batchup.samplers.plan import BatchPlan

__all__ = ["DevicePrefetchIterator", "local_batch_size", "prefetch_to_device", "process_shard"]

_ADAPTER = "batchup.adapters.jax"


def _jax() -> Any:
    return _common.require("jax", "jax", _ADAPTER)


class DevicePrefetchIterator(WrappingIterator):
    """Iterate batches that were put on devices ``size`` batches ahead; see :func:`prefetch_to_device`.

    The state (:meth:`state_dict`) is the wrapped iterator's state *before*
    the oldest batch still waiting in the buffer, that is the position of the
    consumer, not of the prefetcher: restoring it replays nothing twice and
    skips nothing. ``last_padding`` is the padding mask of the batch handed
    out last (rank-sharded iterators).

    Parameters
    ----------
    batches : iterable
        Batches: arrays, or tuples, lists and dicts of arrays.
    size : int, default 2
        Batches kept on the devices ahead of the consumer.
    sharding : jax.sharding.Sharding, optional
        Where to put each array (``None``: the default device); required in a
        multi-process run.
    """

    KIND = "device_prefetch"

    def __init__(self, batches: Any, size: int = 2, sharding: Any = None) -> None:
        jax = _jax()
        super().__init__(iter(batches))
        self._jax = jax
        self._size = positive_int("size", size)
        self._sharding = sharding
        self._multi = jax.process_count() > 1
        if self._multi and sharding is None:
            raise ValueError(
                f"sharding is required in a multi-process run (process_count={jax.process_count()}): "
                "pass e.g. NamedSharding(mesh, PartitionSpec('batch')) so each process's rows form "
                "part of one global array"
            )
        self._split = _batch_split(sharding, jax.process_count())
        _check_planned_sizes(self._inner, self._split)
        self._stateful = callable(getattr(self._inner, "state_dict", None))
        self._buffer: collections.deque = collections.deque()
        self._exhausted = False
        self._error: BaseException | None = None
        self._last_padding: Any = None

    def _put_leaf(self, x: Any) -> Any:
        if self._multi:
            return self._jax.make_array_from_process_local_data(self._sharding, x)
        if self._sharding is None:
            return self._jax.device_put(x)
        return self._jax.device_put(x, self._sharding)

    def _fill(self) -> None:
        while not self._exhausted and len(self._buffer) < self._size:
            before = self._inner.state_dict() if self._stateful else None
            try:
                batch = next(self._inner)
            except StopIteration:
                self._exhausted = True
                return
            except Exception as err:
                # Raised to the consumer when it reaches this batch, not while it
                # still holds earlier, good batches.
                self._exhausted = True
                self._error = err
                return
            padding = getattr(self._inner, "last_padding", None)
            _check_size(batch, self._split)
            # Leaves that are not arrays (None, strings) cannot go to a device: keep them.
            placed = _common.map_leaves(self._place_or_keep, batch)
            self._buffer.append((before, padding, placed))

    def _place_or_keep(self, x: Any) -> Any:
        if hasattr(x, "shape") and hasattr(x, "dtype") and getattr(x.dtype, "kind", "f") not in "USOV":
            return self._put_leaf(x)
        return x

    def __next__(self) -> Any:
        self._fill()
        if not self._buffer:
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            raise StopIteration
        _, self._last_padding, batch = self._buffer.popleft()
        self._fill()  # top up, so the transfer of the next batch overlaps this step
        return batch

    @property
    def last_padding(self) -> Any:
        """The padding mask of the batch handed out last (rank-sharded iterators), else None."""
        return self._last_padding

    def _held(self) -> int:
        return len(self._buffer)

    def _inner_state(self) -> Any:
        if not self._stateful:
            raise TypeError(f"cannot checkpoint: the wrapped iterator {self._inner!r} has no state_dict()")
        return self._buffer[0][0] if self._buffer else self._inner.state_dict()

    def _load_inner_state(self, state: Any) -> None:
        super()._load_inner_state(state)
        self._buffer.clear()
        self._exhausted = False
        self._error = None
        self._last_padding = None


def _batch_split(sharding: Any, process_count: int) -> int:
    """Return over how many devices (of this process) a batch's first axis is split by ``sharding``."""
    if sharding is None:
        return 1
    spec = getattr(sharding, "spec", None)
    mesh = getattr(sharding, "mesh", None)
    if spec is None or mesh is None:  # not a NamedSharding: split over all its devices unless replicated
        if getattr(sharding, "is_fully_replicated", False):
            return 1
        return max(1, len(getattr(sharding, "device_set", ())) // max(1, process_count))
    first = spec[0] if len(spec) else None
    if first is None:
        return 1
    names = first if isinstance(first, tuple) else (first,)
    count = 1
    for name in names:
        count *= int(mesh.shape[name])
    return max(1, count // max(1, process_count))


def _check_planned_sizes(batches: Any, split: int) -> None:
    """Before the first batch: check every batch size the wrapped iterator's plan will give divides by ``split``."""
    plan = getattr(batches, "plan", None)
    if split == 1 or not isinstance(plan, BatchPlan) or not isinstance(plan.batch_size, int):
        return
    bs = plan.batch_size
    n, samples = plan.num_batches, plan.num_samples
    sizes = {bs} if n else set()
    if n and isinstance(samples, int) and not plan.options.drop_last and samples - (n - 1) * bs != bs:
        sizes.add(samples - (n - 1) * bs)
    for size in sorted(sizes):
        if size % split:
            last = " (the last, short batch; pass drop_last=True to leave it out)" if size != bs else ""
            raise ValueError(
                f"a batch of {size} samples{last} does not divide over the {split} devices the sharding "
                f"splits the batch axis over (batch_size={bs}); choose a batch size that is a multiple of {split}"
            )


def _check_size(batch: Any, split: int) -> None:
    if split == 1:
        return
    leaves: list = []
    _common.map_leaves(leaves.append, batch)
    for x in leaves:
        shape = getattr(x, "shape", None)
        if shape and shape[0] % split:
            raise ValueError(
                f"a batch of {shape[0]} samples does not divide over the {split} devices the sharding splits the "
                "batch axis over; choose a batch size that is a multiple of that (and drop_last=True)"
            )


def prefetch_to_device(batches: Any, size: int = 2, sharding: Any = None) -> DevicePrefetchIterator:
    """Return an iterator over ``batches`` whose arrays are already on the devices.

    Parameters
    ----------
    batches : iterable
        Batches: arrays, or tuples, lists and dicts of arrays (for example
        ``source.batch_iterator(...)``).
    size : int, default 2
        Batches kept on the devices ahead of the consumer. Two is usually
        enough to hide the transfer on a GPU; on a CPU it mostly costs memory.
    sharding : jax.sharding.Sharding, optional
        Where to put each array. ``None`` puts it on the default device. A
        ``NamedSharding(mesh, PartitionSpec("batch"))`` splits each batch over
        the mesh's devices (the batch must divide by their number). In a
        multi-process run it is required and each process passes only its
        rows (``jax.make_array_from_process_local_data``).

    Returns
    -------
    DevicePrefetchIterator
        With ``len()`` / ``remaining()`` and ``state_dict()`` /
        ``load_state_dict()`` when ``batches`` has them; the state is the
        consumer's position, not the prefetcher's.

    Raises
    ------
    ValueError
        For ``size < 1``, or no ``sharding`` with ``jax.process_count() > 1``;
        before the first batch, when a batch of the wrapped iterator's plan
        (a short last batch included) does not divide over the devices the
        sharding splits the batch axis over (naming both numbers); at a batch
        that does not divide, for iterators without a plan.
    ImportError
        If JAX is not installed (``pip install batchup[jax]``).

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> it = prefetch_to_device(ArrayDataSource([np.arange(5.0)]).batch_iterator(2))
    >>> [type(x).__name__ for (x,) in it]
    ['ArrayImpl', 'ArrayImpl', 'ArrayImpl']
    """
    return DevicePrefetchIterator(batches, size=size, sharding=sharding)


def process_shard(process_index: int | None = None, process_count: int | None = None) -> tuple | None:
    """Return ``(process_index, process_count)`` for ``shard=``, or ``None`` in a single process.

    Missing values are read from ``jax.process_index()`` and
    ``jax.process_count()``. Pass the result as ``shard=`` to
    ``batch_iterator``: every process then gets disjoint samples and the
    same number of batches per epoch.

    Parameters
    ----------
    process_index : int, optional
        This process's number, ``0 <= process_index < process_count``
        (default ``jax.process_index()``).
    process_count : int, optional
        The number of processes (default ``jax.process_count()``).

    Returns
    -------
    tuple of (int, int) or None
        ``(process_index, process_count)``, or ``None`` when there is one
        process (no sharding needed).

    Raises
    ------
    ValueError
        If ``process_count < 1`` or ``process_index`` is outside ``[0, process_count)``.

    Examples
    --------
    >>> process_shard(1, 4)
    (1, 4)
    >>> process_shard(0, 1) is None
    True
    """
    if process_index is None or process_count is None:
        jax = _jax()
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not is_int(process_count) or process_count < 1:
        raise ValueError(f"process_count must be an int >= 1, got {process_count!r}")
    if not is_int(process_index) or not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be an int in [0, {process_count}), got {process_index!r}")
    return None if process_count == 1 else (int(process_index), int(process_count))


def local_batch_size(global_batch_size: int, process_count: int | None = None,
                     local_device_count: int | None = None) -> int:
    """Return this process's share of a global batch, checking that it divides evenly.

    Parameters
    ----------
    global_batch_size : int
        Samples per step over all processes.
    process_count : int, optional
        The number of processes (default ``jax.process_count()``).
    local_device_count : int, optional
        The devices of this process (default ``jax.local_device_count()``).

    Returns
    -------
    int
        ``global_batch_size // process_count``: the ``batch_size`` to pass to
        this process's ``batch_iterator``.

    Raises
    ------
    ValueError
        If the global batch does not divide by the number of processes, or
        the local batch by the number of local devices (JAX would raise an
        ``IndivisibleError`` at the first step).

    Examples
    --------
    >>> local_batch_size(256, process_count=2, local_device_count=4)
    128
    """
    gbs = positive_int("global_batch_size", global_batch_size)
    if process_count is None or local_device_count is None:
        jax = _jax()
        process_count = jax.process_count() if process_count is None else process_count
        local_device_count = jax.local_device_count() if local_device_count is None else local_device_count
    positive_int("process_count", process_count)
    positive_int("local_device_count", local_device_count)
    if gbs % process_count:
        raise ValueError(
            f"global_batch_size={gbs} does not divide by the {process_count} processes"
        )
    local = gbs // process_count
    if local % local_device_count:
        raise ValueError(
            f"the local batch of {local} samples (global_batch_size={gbs} over {process_count} "
            f"processes) does not divide by the {local_device_count} local devices"
        )
    return local
