"""Feed Keras 3 ``model.fit`` / ``evaluate`` / ``predict`` from a batchup source.

Two shapes, because Keras accepts two kinds of Python input:

* :func:`as_py_dataset` returns a ``keras.utils.PyDataset`` for a
  random-access source (arrays, subsets, mapped or composite array sources,
  any sampler): ``len()`` is the number of batches per epoch and item ``i``
  is batch ``i`` of the current epoch's order, derived from ``(seed,
  epoch)``. Keras' own ``workers`` / ``use_multiprocessing`` /
  ``max_queue_size`` are passed through.
* :func:`as_generator` returns a real Python generator of batch tuples for
  any source (iterator or callable sources, endless sources, batchup's
  parallel pools); Keras needs ``steps_per_epoch`` for it
  (:func:`steps_per_epoch` computes it when the source's size is known).

Batches are ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; ``structure=``
rearranges the source's flat batch tuple into nested inputs, for example
``structure=({"var1": 0, "var2": 1}, 2)`` for a model with two named inputs.
Keras is imported only when one of these functions is called.
"""
from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.context import get_spawning_popen
from typing import Any, Iterator

from batchup import _rng
from batchup._checks import is_int
from batchup.adapters import _common
from batchup.adapters._stream import EpochStream
from batchup.samplers.plan import PlanOptions
from batchup.sources.base import counting_plan

__all__ = ["EpochBatches", "as_generator", "as_py_dataset", "steps_per_epoch"]

_ADAPTER = "batchup.adapters.keras"


class EpochBatches:
    """Random access to the batches of the current epoch; the framework-free core of the PyDataset.

    Parameters
    ----------
    source : RandomAccessDataSource or list of arrays
        Where the samples come from.
    batch_size : int or None
        Samples per batch (``None`` when the sampler sets it).
    shuffle : None, bool, int, RandomState or Generator, default None
        ``None`` keeps the source's order; an int seeds every epoch exactly as
        ``source.batch_iterator(shuffle=seed, epoch=e)`` does; ``True`` or an
        RNG picks a seed once.
    drop_last : bool, default False
        Leave out a final short batch.
    shard : (rank, num_shards) or ShardSpec, optional
        Take only this rank's part of every epoch (data-parallel training).
    structure : nested tuple/dict of int, optional
        How to arrange the flat batch tuple (see :func:`as_py_dataset`).
    epoch : int, default 0
        The epoch to start at (for a resumed run, the ``initial_epoch`` of ``fit``).

    Notes
    -----
    The epoch advances in :meth:`end_epoch` only once at least ``len(self)``
    batches were served since the last advance. Keras calls
    ``on_epoch_end`` more often than once per pass (before the first epoch,
    after peeking at one batch to build the model, around validation, and at
    the end of each ``steps_per_epoch`` slice of a pass), so counting hook
    calls would change the order in the middle of a pass or skip epochs;
    counting served batches does neither. The count lives in shared memory,
    so batches served in Keras' worker processes count too. Each epoch's
    plan is computed once; the samples are fetched on each access.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> table = EpochBatches(ArrayDataSource([np.arange(5)]), 2)
    >>> len(table), [b[0].tolist() for b in table]
    (3, [[0, 1], [2, 3], [4]])
    """

    def __init__(
        self,
        source: Any,
        batch_size: Any,
        *,
        shuffle: Any = None,
        drop_last: bool = False,
        shard: Any = None,
        structure: Any = None,
        epoch: int = 0,
    ) -> None:
        src = _common.as_source(source)
        if not src.is_random_access:
            raise TypeError(
                f"a PyDataset needs a random-access source, got {type(src).__name__}; "
                "use batchup.adapters.keras.as_generator for iterator, callable or parallel sources"
            )
        self._epoch = _epoch_value(epoch)
        self.stream = EpochStream(
            src, batch_size, shuffle=shuffle, drop_last=drop_last, shard=shard, structure=structure
        )
        if self.stream.endless:
            raise ValueError(
                "the source repeats forever (repeats=-1), so an epoch has no length; build it with "
                "repeats=1, or use as_generator(...) with steps_per_epoch"
            )
        self._served = _SharedCount()
        self._lock = threading.Lock()
        self.stream.plan(self._epoch)  # bad arguments fail here, not inside fit()

    @property
    def source(self) -> Any:
        """The data source."""
        return self.stream.source

    @property
    def seed(self) -> int | None:
        """The int seed every epoch's order comes from (``None``: in order)."""
        return self.stream.seed

    # -- pickling (Keras worker processes, spawn) --------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- epochs ---------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch whose order items are taken from."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Jump to ``epoch`` (for example the ``initial_epoch`` of a resumed ``fit``).

        Parameters
        ----------
        epoch : int
            The epoch (``>= 0``) whose order the next items come from; the
            count of items served in the current pass starts again from 0.
        """
        with self._lock:
            self._epoch = _epoch_value(epoch)
            self._served.reset()

    def begin_epoch(self) -> None:
        """Keras' ``on_epoch_begin``: nothing to do (the order changes only in :meth:`end_epoch`)."""

    def end_epoch(self) -> None:
        """Move to the next epoch if a whole pass was served since the last move (``on_epoch_end``)."""
        with self._lock:
            if self._served.value >= len(self.stream.plan(self._epoch)):
                self._epoch += 1
                self._served.reset()

    # -- batches --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.stream.plan(self._epoch))

    def __getitem__(self, index: int) -> Any:
        if not is_int(index):
            raise TypeError(f"index must be an int batch number, got {index!r}")
        epoch = self._epoch
        n = len(self.stream.plan(epoch))
        if not -n <= index < n:
            raise IndexError(f"batch index {index} is out of range for an epoch of {n} batches")
        batch = self.stream.batch(epoch, int(index) % n)
        self._served.increment()
        return _keras_batch(batch, self.stream.structure is not None)

    def __iter__(self) -> Iterator:
        for i in range(len(self)):
            yield self[i]


class _SharedCount:
    """A counter in shared memory that worker processes started by fork or spawn update too."""

    def __init__(self) -> None:
        self._value = multiprocessing.Value("q", 0)

    @property
    def value(self) -> int:
        return int(self._value.value)

    def increment(self) -> None:
        with self._value.get_lock():
            self._value.value += 1

    def reset(self) -> None:
        with self._value.get_lock():
            self._value.value = 0

    def __getstate__(self) -> dict:
        # Shared memory can only travel to a process being started; anywhere else
        # (pickle.dumps by the user) the copy gets its own counter.
        if get_spawning_popen() is not None:
            return {"shared": self._value}
        return {"count": self.value}

    def __setstate__(self, state: dict) -> None:
        if "shared" in state:
            self._value = state["shared"]
        else:
            self._value = multiprocessing.Value("q", int(state["count"]))


def _epoch_value(epoch: Any) -> int:
    if not is_int(epoch) or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
    return int(epoch)


def _keras_batch(batch: Any, structured: bool) -> Any:
    """Return ``batch`` as the tuple Keras expects (``structured``: already arranged by ``structure``)."""
    if structured:
        return batch if isinstance(batch, (tuple, dict)) else (batch,)
    if isinstance(batch, dict):
        return batch
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return (batch,)
    if not 1 <= len(batch) <= 3:
        raise ValueError(
            f"a Keras batch is (x,), (x, y) or (x, y, sample_weight) but the source's batches hold "
            f"{len(batch)} arrays; pass structure= to say which are inputs, targets and weights, "
            "for example structure=((0, 1), 2) for two inputs and one target"
        )
    return batch


# -- the PyDataset class (made on first use, so that importing this module needs no Keras) --

def _make_py_dataset_class() -> type:
    keras = _common.require("keras", "keras", _ADAPTER)

    # Keras is imported here, at run time, so its base class is a value the type checker sees as Any.
    base: Any = keras.utils.PyDataset

    class BatchPyDataset(base):
        """A ``keras.utils.PyDataset`` whose items are the batches of an :class:`EpochBatches`.

        Built by :func:`as_py_dataset`; ``on_epoch_end`` moves it to the next epoch.

        Parameters
        ----------
        batches : EpochBatches
            The batches of each epoch, by index.
        **kwargs
            Passed to ``keras.utils.PyDataset``: ``workers``,
            ``use_multiprocessing`` and ``max_queue_size``.
        """

        def __init__(self, batches: EpochBatches, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.batches = batches

        def __len__(self) -> int:
            return len(self.batches)

        def __getitem__(self, index: int) -> Any:
            return self.batches[index]

        def on_epoch_begin(self) -> None:
            self.batches.begin_epoch()

        def on_epoch_end(self) -> None:
            self.batches.end_epoch()

        @property
        def epoch(self) -> int:
            """The epoch whose order items are taken from."""
            return self.batches.epoch

        def set_epoch(self, epoch: int) -> None:
            """Jump to ``epoch`` (for example the ``initial_epoch`` of a resumed ``fit``).

            Parameters
            ----------
            epoch : int
                The epoch (``>= 0``) whose order the next items come from.
            """
            self.batches.set_epoch(epoch)

    BatchPyDataset.__module__ = __name__
    BatchPyDataset.__qualname__ = "BatchPyDataset"
    return BatchPyDataset


def __getattr__(name: str) -> Any:
    # PEP 562: the class is built (importing Keras) on first access and then kept as a
    # module attribute, so worker processes can unpickle instances by reference.
    if name == "BatchPyDataset":
        cls = _make_py_dataset_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def as_py_dataset(
    source: Any,
    batch_size: int,
    *,
    shuffle: Any = None,
    drop_last: bool = False,
    shard: Any = None,
    structure: Any = None,
    epoch: int = 0,
    workers: int = 1,
    use_multiprocessing: bool = False,
    max_queue_size: int = 10,
) -> Any:
    """Return a ``keras.utils.PyDataset`` over the batches of a random-access source.

    Parameters
    ----------
    source : RandomAccessDataSource or list of arrays
        For example ``ArrayDataSource([X, y])``, a subset, a ``map`` of one,
        or a source with a weighted or balanced sampler.
    batch_size : int
        Samples per batch.
    shuffle : None, int, bool, RandomState or Generator, default None
        ``None`` keeps the order (use it for ``evaluate`` and ``predict``); an
        int seed gives epoch ``e`` the batches of
        ``source.batch_iterator(batch_size, shuffle=seed, epoch=e)``;
        ``True`` or an RNG picks the seed once.
    drop_last : bool, default False
        Leave out a final short batch (keeps shapes fixed for XLA).
    shard : (rank, num_shards) or ShardSpec, optional
        Take only this rank's part of every epoch, for data-parallel
        training where each process shards its own data (with
        ``auto_shard_dataset=False`` on the Keras distribution).
    structure : nested tuple/dict of int, optional
        Rearrange the source's flat batch tuple: each int is a position in it.
        ``((0, 1), 2)`` gives ``((x0, x1), y)`` for a two-input model;
        ``({"a": 0, "b": 1}, 2, 3)`` named inputs, a target and sample weights;
        ``(1, 2)`` drops the indices of an ``include_indices`` source.
    epoch : int, default 0
        The epoch to start at; pass ``fit``'s ``initial_epoch`` when resuming.
    workers, use_multiprocessing, max_queue_size
        Keras' own ``PyDataset`` options, passed through: ``workers > 1``
        fetches batches in a thread pool, ``use_multiprocessing=True`` in
        processes (then the source must be picklable).

    Returns
    -------
    BatchPyDataset
        A ``keras.utils.PyDataset`` with ``len()`` batches per epoch; item ``i``
        is batch ``i`` of the current epoch. It also has ``epoch`` and
        ``set_epoch(e)``, and ``.batches``, the :class:`EpochBatches` behind it.

    Raises
    ------
    TypeError
        For a source that is not random access (use :func:`as_generator`).
    ValueError
        For an endless source (``repeats=-1``) or bad arguments.
    ImportError
        If Keras is not installed (``pip install batchup[keras]``).

    Notes
    -----
    Keras calls ``on_epoch_end`` more often than once per epoch (before the
    first epoch and around validation). The epoch moves on only when the
    current one was used, so epoch ``e`` of ``fit`` is epoch ``e`` here.
    Keras' ``fit(shuffle=True)`` additionally visits the batches in a random
    order; the samples are already shuffled here, so ``shuffle=False`` in
    ``fit`` keeps runs reproducible from the seed alone. Use separate
    datasets for training and ``validation_data``.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> X = np.random.default_rng(0).random((100, 4), dtype=np.float32)
    >>> y = (X.sum(axis=1) > 2).astype(np.float32)
    >>> ds = as_py_dataset(ArrayDataSource([X, y]), 32, shuffle=0)  # doctest: +SKIP
    >>> len(ds), ds[0][0].shape  # doctest: +SKIP
    (4, (32, 4))
    >>> model.fit(ds, epochs=3, shuffle=False)  # doctest: +SKIP
    """
    batches = EpochBatches(
        source, batch_size, shuffle=shuffle, drop_last=drop_last, shard=shard, structure=structure, epoch=epoch,
    )
    cls = __getattr__("BatchPyDataset")
    return cls(batches, workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)


def steps_per_epoch(
    source: Any, batch_size: Any, *, shuffle: Any = None, drop_last: bool = False, shard: Any = None,
    epoch: int | None = None,
) -> int:
    """Return the number of batches in one pass over ``source`` (on this rank, with ``shard``).

    Pass it as ``steps_per_epoch`` to ``fit`` together with
    :func:`as_generator`, whose generator Keras cannot measure. The count
    comes from the source's plan, so it is the number the iterator yields.

    Parameters
    ----------
    source : AbstractDataSource or list of arrays
        The source.
    batch_size : int or None
        Samples per batch (``None`` when the sampler sets it).
    shuffle : None, int, bool, RandomState or Generator, default None
        The ``shuffle`` you iterate with; it matters only for sources whose
        count depends on the order (see ``epoch``). A weighted sampler, which
        cannot go in order, is counted without one.
    drop_last : bool, default False
        Leave out a final short batch.
    shard : (rank, num_shards) or ShardSpec, optional
        This rank's part of every epoch.
    epoch : int, optional
        Count this epoch. Without it, the count must be the same in every
        epoch: a shuffled, non-stratified ``ChoiceDataSource`` ends when its
        first member runs out, which depends on the epoch's order, so its
        count changes from epoch to epoch and a single ``steps_per_epoch``
        would drift; use :func:`as_py_dataset`, whose length Keras asks for
        every epoch.

    Returns
    -------
    int
        The number of batches.

    Raises
    ------
    ValueError
        If the source's size is unknown or infinite, or (without ``epoch``)
        changes from epoch to epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> steps_per_epoch(ArrayDataSource([np.zeros(10)]), 4)
    3
    >>> steps_per_epoch(ArrayDataSource([np.zeros(10)]), 4, drop_last=True)
    2
    """
    src = _common.as_source(source)
    seed = _common.resolve_seed(shuffle)
    key = None if seed is None else _rng.SeedKey(seed)
    options = PlanOptions.make(key, drop_last, shard, 0 if epoch is None else epoch)
    if src.is_random_access:
        plan = counting_plan(src, batch_size, options)
        if epoch is None and not plan.fixed_length:
            raise ValueError(
                f"the number of batches of this {type(src).__name__} changes from epoch to epoch (it depends on "
                "each epoch's order), so one steps_per_epoch would drift; use as_py_dataset, whose length "
                "Keras asks for every epoch, or pass epoch= to count one epoch"
            )
        n = plan.batch_count
    elif options.shard is not None:
        raise ValueError(
            f"rank sharding needs a random-access source (equal batch counts per rank), got {type(src).__name__}"
        )
    else:
        kw = {k: v for k, v in (("shuffle", seed), ("drop_last", options.drop_last)) if v}
        n = src.num_batches(batch_size, **kw)
    if n is None or n == float("inf"):
        raise ValueError(
            f"the number of batches of {type(src).__name__} is unknown or infinite, so the steps "
            "per epoch are unknown; pass steps_per_epoch to fit yourself"
        )
    return int(n)


def as_generator(
    source: Any,
    batch_size: Any,
    *,
    shuffle: Any = None,
    drop_last: bool = False,
    shard: Any = None,
    epochs: int | None = None,
    structure: Any = None,
) -> Iterator:
    """Return a generator of Keras batch tuples from any source, pass after pass.

    Keras accepts a Python generator object (not an iterator class) and uses
    it once for the whole ``fit``; so this generator runs ``epochs`` passes
    over the source (forever with ``None``) and ``fit`` needs
    ``steps_per_epoch`` (see :func:`steps_per_epoch`).

    Parameters
    ----------
    source : AbstractDataSource or list of arrays
        Any source: iterator, callable, endless (``repeats=-1``), random access,
        or one of batchup's parallel (prefetching) sources.
    batch_size : int
        Passed to ``source.batch_iterator``.
    shuffle : None, int, bool, RandomState or Generator, default None
        An int seed gives pass ``e`` the batches of
        ``source.batch_iterator(batch_size, shuffle=seed, epoch=e)`` (a
        callable source receives ``epoch=e`` from the second pass on).
    drop_last : bool, default False
        Leave out a final short batch.
    shard : (rank, num_shards) or ShardSpec, optional
        This rank's part of every epoch (random-access sources).
    epochs : int or None, default None
        Number of passes; ``None`` loops until the consumer stops. A pass that
        yields no batch (a used-up iterator source) ends the generator.
    structure : nested tuple/dict of int, optional
        As for :func:`as_py_dataset`.

    Returns
    -------
    generator of tuple or dict
        A real generator (what Keras asks for), yielding ``(x,)``, ``(x, y)``
        or ``(x, y, sample_weight)``, arranged by ``structure``. The arguments
        are checked at the call, not at the first ``next()``.

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> gen = as_generator(ArrayDataSource([np.arange(5), np.arange(5) * 10]), 2, epochs=1)
    >>> [(x.tolist(), y.tolist()) for x, y in gen]
    [([0, 1], [0, 10]), ([2, 3], [20, 30]), ([4], [40])]
    """
    if epochs is not None and (not is_int(epochs) or epochs < 0):
        raise ValueError(f"epochs must be None (forever) or an int >= 0, got {epochs!r}")
    stream = EpochStream(source, batch_size, shuffle=shuffle, drop_last=drop_last, shard=shard, structure=structure)
    # Arguments are checked above, at the call; the generator below runs lazily.
    return _passes(stream, epochs)


def _passes(stream: EpochStream, epochs: Any) -> Iterator:
    epoch = 0
    structured = stream.structure is not None
    while epochs is None or epoch < epochs:
        produced = False
        for batch in stream.batches(epoch):
            produced = True
            yield _keras_batch(batch, structured)
        if not produced:
            return
        epoch += 1
