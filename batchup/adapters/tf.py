"""Feed ``tf.data`` pipelines (and Keras on the TensorFlow backend) from a batchup source.

:func:`as_tf_dataset` wraps a generator *function* with
``tf.data.Dataset.from_generator``. tf.data calls that function again for
every pass, and each call is the next epoch (reshuffled from ``(seed,
epoch)``). The ``output_signature`` is inferred from the first batch unless
given, and the dataset's cardinality is set when the number of batches is
known, so Keras does not warn that the input "ran out of data".
TensorFlow is imported only when :func:`as_tf_dataset` is called; it is not
part of the test extras (``pip install batchup[tf]``).
"""
from __future__ import annotations

import threading
from typing import Any, Iterator

import numpy as np

from batchup.adapters import _common
from batchup.adapters._stream import EpochStream

__all__ = ["as_tf_dataset", "infer_signature"]

_ADAPTER = "batchup.adapters.tf"


def _tf() -> Any:
    return _common.require("tensorflow", "tf", _ADAPTER)


def infer_signature(batch: Any, batch_size: int | None = None, *, others: Any = ()) -> Any:
    """Return the ``tf.TensorSpec`` nest of ``batch``.

    Parameters
    ----------
    batch : array or nested tuple/list/dict of arrays
        A sample batch, such as the first batch of the source: tuples and
        lists become tuples, dicts stay dicts. A 0-d leaf gets the spec of a
        scalar (shape ``()``).
    batch_size : int, optional
        The static batch dimension when every batch has that many samples (as
        with ``drop_last=True``); ``None`` (the default) leaves it unknown.
    others : iterable of batches, default ()
        More batches of the same structure (keyword only): an axis after the
        batch axis whose size differs between them and ``batch`` is left
        unknown (``None``), as the padded length of variable-length samples
        is. Empty by default, so every other axis is taken from ``batch``.

    Returns
    -------
    tf.TensorSpec or nested tuple/dict of tf.TensorSpec
        One spec per leaf, the ``output_signature`` of
        ``tf.data.Dataset.from_generator``; string arrays become ``tf.string``.

    Raises
    ------
    TypeError
        For a leaf TensorFlow cannot hold (an object array).
    ValueError
        If the batches in ``others`` have another structure or rank.
    """
    tf = _tf()
    shapes: dict = {}
    for other in others:
        for path, x in _leaves(other):
            shapes.setdefault(path, []).append(np.shape(x))

    def spec(path: tuple, x: Any) -> Any:
        arr = np.asarray(x)
        if arr.dtype.kind == "O":
            raise TypeError(f"cannot infer a tf.TensorSpec for an object array of shape {arr.shape}")
        if arr.ndim == 0:
            return tf.TensorSpec(shape=(), dtype=tf.as_dtype(arr.dtype))
        dims: list = [batch_size, *arr.shape[1:]]
        for shape in shapes.get(path, []):
            if len(shape) != arr.ndim:
                raise ValueError(f"batches disagree on the rank of the array at {path}: {arr.shape} and {shape}")
            dims = [None if d is None or d != s else d for d, s in zip(dims, (batch_size, *shape[1:]))]
        dtype = tf.string if arr.dtype.kind in "US" else tf.as_dtype(arr.dtype)
        return tf.TensorSpec(shape=tuple(dims), dtype=dtype)

    def visit(node: Any, path: tuple) -> Any:
        if isinstance(node, dict):
            return {k: visit(v, path + (k,)) for k, v in node.items()}
        if isinstance(node, (tuple, list)):
            return tuple(visit(v, path + (i,)) for i, v in enumerate(node))
        return spec(path, node)

    return visit(batch, ())


def _leaves(node: Any, path: tuple = ()) -> Iterator:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(node, (tuple, list)):
        for i, v in enumerate(node):
            yield from _leaves(v, path + (i,))
    else:
        yield path, node


#: How many batches, spread over the first epoch, the signature is inferred from.
PROBE_BATCHES = 16


def _probe(stream: EpochStream, epoch: int) -> list:
    """Return up to :data:`PROBE_BATCHES` batches of ``epoch`` spread over it (random access), else the first."""
    if stream.random_access and stream.plan(epoch).random_access:
        try:
            n = stream.length(epoch)
        except TypeError:
            n = PROBE_BATCHES
        picks = np.unique(np.linspace(0, max(n - 1, 0), min(PROBE_BATCHES, n)).astype(np.int64))
        return [_tuples(stream.batch(epoch, int(b))) for b in picks]
    first = next(iter(stream.batches(epoch)), None)
    return [] if first is None else [_tuples(first)]


class _Passes:
    """The callable tf.data calls for every iteration of the dataset.

    A pass that runs to its end moves on to the next epoch; one that is
    abandoned early (``next(iter(ds))``, ``ds.take(1)``, a peek while
    building a model) does not, so the next full pass is still the epoch
    that was peeked at.
    """

    def __init__(self, stream: EpochStream, first_epoch: int) -> None:
        self._stream = stream
        self._next_epoch = first_epoch
        self._lock = threading.Lock()

    @property
    def epoch(self) -> int:
        """The epoch the next pass yields."""
        return self._next_epoch

    def __call__(self) -> Iterator:
        with self._lock:
            epoch = self._next_epoch
        for batch in self._stream.batches(epoch):
            yield _tuples(batch)
        with self._lock:
            if self._next_epoch == epoch:
                self._next_epoch = epoch + 1


def _tuples(batch: Any) -> Any:
    # tf.data treats a list as one tensor; the signature uses tuples.
    if isinstance(batch, dict):
        return {k: _tuples(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return tuple(_tuples(v) for v in batch)
    return batch


def as_tf_dataset(
    source: Any,
    batch_size: int,
    *,
    shuffle: Any = None,
    drop_last: bool = False,
    shard: Any = None,
    structure: Any = None,
    output_signature: Any = None,
    epoch: int = 0,
) -> Any:
    """Return a ``tf.data.Dataset`` of the batches of ``source``.

    Parameters
    ----------
    source : AbstractDataSource or list of arrays
        Any source; random-access sources are fetched batch by batch.
    batch_size : int
        Samples per batch.
    shuffle : None, int, bool, RandomState or Generator, default None
        ``None`` keeps the order; an int seed gives pass ``e`` over the
        dataset the batches of ``source.batch_iterator(batch_size,
        shuffle=seed, epoch=e)``.
    drop_last : bool, default False
        Leave out a final short batch.
    shard : (rank, num_shards) or ShardSpec, optional
        This worker's part of every epoch (random-access sources); prefer it
        to ``Dataset.shard``, which would still read every batch.
    structure : nested tuple/dict of int, optional
        Rearrange the flat batch tuple, e.g. ``((0, 1), 2)`` for two inputs.
    output_signature : nest of tf.TensorSpec, optional
        Inferred when omitted from up to 16 batches spread over the first
        epoch (random-access sources; the first batch otherwise): an axis
        whose size differs between them — the padded length of
        variable-length samples, say — is ``None``. The batch dimension is
        static (``batch_size``) with ``drop_last=True`` and ``None``
        otherwise. Pass it yourself when a few batches cannot show every
        shape the source makes.
    epoch : int, default 0
        The epoch of the first pass.

    Returns
    -------
    tf.data.Dataset
        With ``cardinality()`` set to the number of batches when known and
        the same in every epoch (unknown for a source whose count changes
        from epoch to epoch, such as a shuffled, non-stratified choice).
        Every complete pass over it is the next epoch; an abandoned pass
        (``next(iter(ds))``, ``ds.take(k)``) does not advance the epoch.

    Raises
    ------
    ValueError
        If the source yields no batch and no ``output_signature`` was given.
    ImportError
        If TensorFlow is not installed (``pip install batchup[tf]``).

    Examples
    --------
    >>> import numpy as np
    >>> from batchup.sources import ArrayDataSource
    >>> ds = as_tf_dataset(ArrayDataSource([np.arange(10.0), np.arange(10)]), 4, shuffle=0)  # doctest: +SKIP
    >>> int(ds.cardinality()), ds.element_spec[0].shape.as_list()  # doctest: +SKIP
    (3, [None])
    """
    tf = _tf()
    stream = EpochStream(source, batch_size, shuffle=shuffle, drop_last=drop_last, shard=shard, structure=structure)
    if output_signature is None:
        probe = _probe(stream, epoch)
        if not probe:
            raise ValueError(
                "cannot infer output_signature: the source yields no batch; pass output_signature="
            )
        static = stream.batch_size if stream.drop_last and isinstance(stream.batch_size, int) else None
        output_signature = infer_signature(probe[0], static, others=probe[1:])
    ds = tf.data.Dataset.from_generator(_Passes(stream, epoch), output_signature=output_signature)
    try:
        n = len(stream)
    except TypeError:
        n = None
    if n is not None and stream.fixed_length:
        ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    return ds
