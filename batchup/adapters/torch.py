"""Feed PyTorch training loops from a batchup source.

* :func:`as_iterable_dataset` returns a ``torch.utils.data.IterableDataset``
  of whole batches for ``DataLoader(dataset, batch_size=None, num_workers=k)``.
  torch copies the dataset into every worker, so each copy takes a distinct
  share of the batches (worker ``w`` of ``W`` takes batches ``w, w + W, ...``
  of its rank's stream and fetches only those); the DataLoader takes from the
  workers in turn, so the loader yields the same batches in the same order
  for any number of workers. Under ``torch.distributed`` each rank first
  takes its own shard of every epoch (disjoint samples, equal batch counts).
* :func:`iter_tensors` turns any batch iterator (for example one of
  batchup's parallel, prefetching iterators) into tensors, for a loop
  without a DataLoader; it keeps the iterator's ``state_dict``.

NumPy arrays become tensors with ``torch.from_numpy``, which shares memory
rather than copying. torch is imported only when one of these functions is called.
"""
from __future__ import annotations

import warnings
from typing import Any, Iterator, Mapping

import numpy as np

from batchup._checks import is_int
from batchup._iterator import WrappingIterator, check_state
from batchup.adapters import _common
from batchup.adapters._stream import EpochStream

__all__ = [
    "EpochStream",
    "TensorBatchIterator",
    "as_iterable_dataset",
    "distributed_shard",
    "iter_tensors",
    "to_tensors",
]

_ADAPTER = "batchup.adapters.torch"
# NumPy kinds torch.from_numpy accepts: bool, signed and unsigned ints, floats, complex.
_NUMERIC_KINDS = frozenset("biufc")


def _torch() -> Any:
    return _common.require("torch", "torch", _ADAPTER)


def _leaf_to_tensor(torch: Any, x: Any) -> Any:
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in _NUMERIC_KINDS:
            return x  # strings and objects stay NumPy (torch has no tensor for them)
        if not x.flags.writeable:
            x = x.copy()  # from_numpy on a read-only array warns and would alias it
        return torch.from_numpy(x)
    if isinstance(x, np.generic) and x.dtype.kind in _NUMERIC_KINDS:
        return torch.as_tensor(x)
    return x


def to_tensors(batch: Any) -> Any:
    """Return ``batch`` with every numeric NumPy array replaced by a tensor sharing its memory.

    Tuples, lists, dicts and namedtuples keep their structure; read-only
    arrays are copied first; string and object arrays are left as they are.

    Parameters
    ----------
    batch : array or nested tuple/list/dict of arrays
        A batch as a batchup iterator yields it.

    Returns
    -------
    torch.Tensor or nested tuple/list/dict
        The same structure, with ``torch.Tensor`` leaves for numeric arrays
        (bool, int, unsigned, float, complex) and NumPy scalars.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(3, dtype=np.float32)
    >>> t, labels = to_tensors((x, np.array(["a", "b", "c"])))
    >>> t.data_ptr() == x.ctypes.data, labels.dtype.kind
    (True, 'U')
    """
    torch = _torch()
    return _common.map_leaves(lambda x: _leaf_to_tensor(torch, x), batch)


def distributed_shard() -> tuple | None:
    """Return ``(rank, world_size)`` of the initialised ``torch.distributed`` group, else ``None``.

    ``None`` is also returned for a world of one process.

    Returns
    -------
    tuple of (int, int) or None
        ``(rank, world_size)``, to pass as ``shard=``; ``None`` when
        ``torch.distributed`` is unavailable, not initialised or has one process.
    """
    torch = _torch()
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    return None if world == 1 else (dist.get_rank(), world)


# -- the IterableDataset class (made on first use, so that importing this module needs no torch) --

def _make_dataset_class() -> type:
    torch = _torch()

    _refuse_collation(torch)

    # torch is imported here, at run time, so its base class is a value the type checker sees as Any.
    base: Any = torch.utils.data.IterableDataset

    class BatchIterableDataset(base):
        """An ``IterableDataset`` of whole batches; see :func:`as_iterable_dataset`.

        It is ``Stateful``: ``state_dict()`` is the epoch and the number of
        batches this copy (one DataLoader worker, or the main process) has
        yielded in it, so torchdata's ``StatefulDataLoader`` resumes
        mid-epoch by computing the rest of the epoch, not by replaying it.

        Parameters
        ----------
        stream : EpochStream
            The batches of the source, epoch by epoch, on this rank.
        epoch : int, default 0
            The epoch the first pass iterates.
        """

        KIND = "torch_batches"

        def __init__(self, stream: EpochStream, epoch: int = 0) -> None:
            super().__init__()
            self.stream = stream
            # In shared memory: set_epoch in the main process reaches workers that
            # already exist (persistent_workers=True) as well as new ones.
            self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
            self._position = 0  # batches this copy yielded in the current pass
            self._resume = 0  # set by load_state_dict: where the next pass of this copy starts
            self.set_epoch(epoch)

        @property
        def epoch(self) -> int:
            """The epoch the next pass iterates (shared with the DataLoader's workers)."""
            return int(self._epoch.item())

        def set_epoch(self, epoch: int) -> None:
            """Make the next pass iterate ``epoch``, in this process and in its workers.

            Parameters
            ----------
            epoch : int
                The epoch, ``>= 0``; call it before each pass (as with a
                ``DistributedSampler``) so every epoch has its own order.

            Raises
            ------
            ValueError
                If ``epoch`` is not an int ``>= 0``.
            """
            if not is_int(epoch) or epoch < 0:
                raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
            self._epoch.fill_(int(epoch))

        def __len__(self) -> int:
            return self.stream.length(self.epoch)

        def __iter__(self) -> Iterator:
            info = torch.utils.data.get_worker_info()
            worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
            start, self._resume = self._resume, 0
            self._position = start
            for batch in self.stream.batches(self.epoch, worker, num_workers, start=start * num_workers):
                self._position += 1
                yield _whole(to_tensors(batch))

        def state_dict(self) -> dict:
            """Return the epoch and the batches this copy yielded in it (JSON values).

            Returns
            -------
            dict
                ``kind``, ``stream`` (the stream's fingerprint), ``epoch`` and
                ``position`` (batches this copy yielded in the current pass).
            """
            return {
                "kind": self.KIND, "stream": self.stream.fingerprint(), "epoch": self.epoch,
                "position": self._position,
            }

        def load_state_dict(self, state: Mapping[str, Any]) -> None:
            """Resume this copy: the next pass is ``epoch`` from this copy's batch ``position`` on.

            Parameters
            ----------
            state : mapping
                A dict from :meth:`state_dict` of a dataset over the same
                stream (seed, batch size, options and source).

            Raises
            ------
            ValueError
                If ``state`` is malformed or belongs to another stream.
            """
            where = type(self).__name__
            check_state(state, {"kind": self.KIND, "stream": self.stream.fingerprint()}, where)
            epoch, position = state.get("epoch"), state.get("position")
            if not is_int(epoch) or epoch < 0 or not is_int(position) or position < 0:
                raise ValueError(
                    f"{where}: malformed state, epoch and position must be ints >= 0, got {epoch!r} and {position!r}"
                )
            self.set_epoch(int(epoch))
            self._resume = self._position = int(position)

    BatchIterableDataset.__module__ = __name__
    BatchIterableDataset.__qualname__ = "BatchIterableDataset"
    return BatchIterableDataset


class _WholeBatch(tuple):
    """A batch tuple the adapter yields; ``default_collate`` refuses to stack several of them."""

    __slots__ = ()


class _WholeBatchDict(dict):
    """A batch dict the adapter yields; ``default_collate`` refuses to stack several of them."""


def _whole(batch: Any) -> Any:
    if isinstance(batch, dict):
        return _WholeBatchDict(batch)
    if isinstance(batch, (tuple, list)) and not hasattr(batch, "_fields"):
        return _WholeBatch(batch)
    return batch


def _refuse_collation(torch: Any) -> None:
    """Make ``DataLoader(batch_size=k)`` over the adapter fail clearly instead of stacking batches."""

    def refuse(batch: Any, *, collate_fn_map: Any = None) -> Any:
        raise TypeError(
            "as_iterable_dataset yields whole batches, but the DataLoader was asked to stack "
            f"{len(batch)} of them into one (batch_size={len(batch)}); use "
            "DataLoader(dataset, batch_size=None) and set the batch size in as_iterable_dataset"
        )

    table = torch.utils.data._utils.collate.default_collate_fn_map
    table.setdefault(_WholeBatch, refuse)
    table.setdefault(_WholeBatchDict, refuse)


def __getattr__(name: str) -> Any:
    # PEP 562: built (importing torch) on first access, then kept, so that worker
    # processes started by spawn or forkserver unpickle instances by reference.
    if name == "BatchIterableDataset":
        cls = _make_dataset_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def as_iterable_dataset(
    source: Any,
    batch_size: int,
    *,
    shuffle: Any = None,
    drop_last: bool = False,
    shard: Any = "auto",
    structure: Any = None,
    epoch: int = 0,
) -> Any:
    """Return a ``torch.utils.data.IterableDataset`` of batches for ``DataLoader(batch_size=None)``.

    Parameters
    ----------
    source : AbstractDataSource or list of arrays
        Where the batches come from; random-access sources (arrays, subsets,
        maps of them, any sampler) are split between workers by batch.
    batch_size : int
        Samples per batch (the DataLoader must have ``batch_size=None``).
    shuffle : None, int, bool, RandomState or Generator, default None
        ``None`` keeps the order; an int seed gives epoch ``e`` the batches of
        ``source.batch_iterator(batch_size, shuffle=seed, epoch=e)``, which
        every worker and rank computes alike; ``True`` or an RNG picks the
        seed once, before workers start.
    drop_last : bool, default False
        Leave out a final short batch.
    shard : "auto", None, (rank, num_shards) or ShardSpec, default "auto"
        This rank's part of every epoch. ``"auto"`` reads the rank and world
        size of ``torch.distributed`` if it is initialised when this function
        is called (call it after ``init_process_group``).
    structure : nested tuple/dict of int, optional
        Rearrange the flat batch tuple, for example ``{"image": 0, "label": 1}``.
    epoch : int, default 0
        The first epoch; call ``dataset.set_epoch(e)`` before each epoch.

    Returns
    -------
    BatchIterableDataset
        With ``len()`` = batches of the current epoch on this rank, ``set_epoch(e)``,
        ``epoch`` and ``stream`` (the :class:`EpochStream` behind it).

    Raises
    ------
    ValueError
        For rank sharding of a source that is not random access.
    ImportError
        If torch is not installed (``pip install batchup[torch]``).

    Notes
    -----
    * Like ``DistributedSampler``, the dataset does not know when an epoch
      starts: call ``set_epoch(e)`` before iterating epoch ``e`` or every
      epoch repeats epoch 0's order. The epoch lives in shared memory, so it
      also reaches ``persistent_workers``.
    * The dataset has ``state_dict``/``load_state_dict`` (the epoch and the
      batches each copy yielded), so torchdata's ``StatefulDataLoader``
      resumes in the middle of an epoch without replaying it (with the same
      ``num_workers`` as the checkpointed loader).
    * The DataLoader must not batch again: with ``batch_size`` other than
      ``None`` it raises ``TypeError`` at the first batch instead of
      stacking whole batches into a batch of batches.
    * Use ``DataLoader(ds, batch_size=None, num_workers=k)``: the DataLoader
      converts each batch tuple to a **list** (``default_convert``), so
      unpack it (``for x, y in loader``) rather than testing for a tuple.
    * With ``num_workers=0`` tensors share memory with the NumPy batches
      (``from_numpy``, no copy); with workers they come back through torch's
      shared memory. Pinning is the DataLoader's job: pass
      ``pin_memory=True`` to it when training on a GPU.
    * A seeded ``map`` receives batch ``k`` of epoch ``e``'s number in the
      source's plan (``e * len + k``), as in the serial iterator, so
      augmentation does not depend on the number of workers.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> ds = as_iterable_dataset(ArrayDataSource([np.arange(10.0), np.arange(10)]), 4, shuffle=0)  # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)  # doctest: +SKIP
    >>> for epoch in range(3):  # doctest: +SKIP
    ...     ds.set_epoch(epoch)
    ...     for x, y in loader:
    ...         train_step(x, y)
    """
    if isinstance(shard, str):
        if shard != "auto":
            raise ValueError(f"shard must be 'auto', None, (rank, num_shards) or a ShardSpec, got {shard!r}")
        shard = distributed_shard()
    stream = EpochStream(source, batch_size, shuffle=shuffle, drop_last=drop_last, shard=shard, structure=structure)
    cls = __getattr__("BatchIterableDataset")
    return cls(stream, epoch)


def _accelerator_available(torch: Any) -> bool:
    acc = getattr(torch, "accelerator", None)
    if acc is not None and hasattr(acc, "is_available"):
        return bool(acc.is_available())
    return bool(torch.cuda.is_available())  # pragma: no cover - torch < 2.6


class TensorBatchIterator(WrappingIterator):
    """Convert the batches of another iterator to tensors; keeps its length, padding and state.

    See :func:`iter_tensors`, which builds it.

    Parameters
    ----------
    batches : iterable of batches
        Typically ``source.batch_iterator(...)``.
    pin_memory : bool, default False
        Pin each tensor (without an accelerator: warn and pin nothing).
    device : str or torch.device, optional
        Move each tensor there (``non_blocking`` when pinned).
    """

    KIND = "tensors"

    def __init__(self, batches: Any, *, pin_memory: bool = False, device: Any = None) -> None:
        torch = _torch()
        super().__init__(iter(batches))
        self._torch = torch
        self._device = None if device is None else torch.device(device)
        self._pin = bool(pin_memory)
        if self._pin and not _accelerator_available(torch):
            warnings.warn(
                "pin_memory=True but no accelerator is available: batches are not pinned",
                UserWarning,
                stacklevel=3,
            )
            self._pin = False

    def _convert(self, x: Any) -> Any:
        x = _leaf_to_tensor(self._torch, x)
        if isinstance(x, self._torch.Tensor):
            if self._pin:
                x = x.pin_memory()
            if self._device is not None:
                x = x.to(self._device, non_blocking=self._pin)
        return x

    def _transform(self, batch: Any) -> Any:
        return _common.map_leaves(self._convert, batch)


def iter_tensors(batches: Any, *, pin_memory: bool = False, device: Any = None) -> TensorBatchIterator:
    """Return an iterator over ``batches`` with NumPy arrays turned into tensors.

    For loops without a DataLoader, for example over one of batchup's
    parallel iterators; ``len()``, ``remaining()`` and
    ``state_dict()``/``load_state_dict()`` are those of ``batches``.

    Parameters
    ----------
    batches : iterable of batches
        Typically ``source.batch_iterator(...)``.
    pin_memory : bool, default False
        Pin each tensor (page-locked memory for fast, asynchronous copies to
        a GPU). Without an accelerator this warns once and pins nothing, as
        the DataLoader does.
    device : str or torch.device, optional
        Move each tensor there (``non_blocking`` when pinned).

    Returns
    -------
    TensorBatchIterator
        Yields the batches of ``batches`` with ``torch.Tensor`` leaves.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> it = iter_tensors(ArrayDataSource([np.arange(5.0)]).batch_iterator(2))
    >>> [b[0].tolist() for b in it]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """
    return TensorBatchIterator(batches, pin_memory=pin_memory, device=device)
