"""Balanced batches: every batch holds ``n`` distinct classes with ``m`` samples each.

Metric learning (triplet, contrastive, prototypical losses) needs batches in
which several classes appear several times: the "P classes x K samples" or
"n-class x m-sample" scheme. :class:`BalancedSampler` builds such batches
from per-sample integer labels. One epoch visits every sample at least once;
classes with fewer than ``m`` samples are oversampled, drawing with
replacement only inside such a class. The epoch plan is a pure function of
``(seed, epoch)``, so a checkpoint is a few integers and restoring costs one
epoch plan, never a replay.

:func:`to_categorical` and :class:`OneHotLabels` turn the integer labels of a
batch into one-hot rows (the ``categorical=True`` option of Keras-style
balanced batch generators) via ``source.map(...)``.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np

from batchup import _rng
from batchup._checks import is_int, positive_int, repeats_value
from batchup.samplers.base import PlannedSampler
from batchup.samplers.flat import FlatPlan
from batchup.samplers.plan import PlanOptions

__all__ = ["BalancedSampler", "OneHotLabels", "to_categorical"]


def _check_labels(labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        hint = " (for one-hot labels pass labels.argmax(axis=1))" if y.ndim == 2 else ""
        raise ValueError(f"labels must be 1-D integer class labels, got an array of shape {y.shape}{hint}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must be 1-D integer class labels, got dtype {y.dtype}")
    if y.size == 0:
        raise ValueError("labels must not be empty")
    return y.astype(np.int64)


class BalancedSampler(PlannedSampler):
    """Draw batches of ``classes_per_batch`` classes x ``samples_per_class`` samples.

    Parameters
    ----------
    labels : 1-D array-like of int
        The class label of every sample; indices run over ``range(len(labels))``.
    classes_per_batch : int
        ``n``: distinct classes in every batch (at most the number of classes).
    samples_per_class : int
        ``m``: samples of each of those classes in every batch.
    repeats : int, default 1
        Keyword-only. Epochs per iteration; ``-1`` repeats forever.
    seed : int, optional
        Keyword-only. The seed used when ``batch_iterator`` is called without
        ``shuffle``. Without one, a seed is drawn from OS entropy once, here,
        so every copy of the sampler (pickled to a worker process, say)
        plans the same batches; a checkpoint records it, so an unseeded run
        can still be resumed.

    Raises
    ------
    ValueError
        If ``labels`` is not 1-D or empty, a count is not positive,
        ``classes_per_batch`` exceeds the number of classes, or ``repeats`` is
        invalid; also (from the iterator methods) if ``batch_size`` is not
        ``classes_per_batch * samples_per_class``.
    TypeError
        If ``labels`` are not integers, or a count or ``seed`` is not an int.

    See Also
    --------
    batchup.samplers.WeightedSampler.class_balancing_sampler : balance classes
        on average, without a fixed batch layout.

    Notes
    -----
    *Epoch.* One epoch is :attr:`batches_per_epoch` batches, the smallest
    number in which every sample appears at least once: class ``c`` with
    ``n_c`` samples is cut into ``k_c = ceil(n_c / m)`` groups of ``m``;
    ``batches_per_epoch = max(ceil(sum(k_c) / n), max(k_c))``. Each epoch
    shuffles every class, pads its last group with other samples of the same
    class (distinct unless ``n_c < m``), spreads every class's groups over
    distinct batches (picking classes with probability proportional to their
    groups still to place) and fills any free slot with an extra group of a
    class not yet in that batch. Indices repeat within a batch only for a
    class with fewer than ``m`` samples.

    *Layout.* A batch is ``n`` blocks of ``m`` indices; block ``j`` holds one
    class, and the class order is random, so ``batch.reshape(n, m)`` groups
    the batch by class.

    *Randomness.* With an int seed (``seed=``, ``shuffle=<int>`` or the seed
    drawn when neither is given) epoch ``e``'s plan depends only on
    ``(seed, e)`` and the labels; pass ``epoch=e`` to ``batch_iterator`` (or
    use ``repeats``) to get a new plan each epoch. With a
    ``RandomState`` or ``Generator`` (``shuffle=``) each epoch's plan is drawn
    from it, and a checkpoint stores its state at the start of the epoch.
    Plans are reproducible for a given NumPy version.

    Examples
    --------
    >>> labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    >>> sampler = BalancedSampler(labels, classes_per_batch=2, samples_per_class=2, seed=0)
    >>> sampler.batches_per_epoch, sampler.num_indices_generated()
    (3, 12)
    >>> for b in sampler.in_order_indices_batch_iterator(4):
    ...     print(b.tolist(), "labels", labels[b].tolist())
    [8, 7, 0, 1] labels [2, 2, 0, 0]
    [3, 4, 2, 0] labels [1, 1, 0, 0]
    [6, 5, 4, 3] labels [2, 2, 1, 1]

    Used as the sampler of a data source, with one-hot labels:

    >>> from batchup.sources import ArrayDataSource
    >>> X = np.arange(9) * 10
    >>> ds = ArrayDataSource([X, labels], sampler=sampler).map(OneHotLabels(sampler.classes))
    >>> bX, by = next(ds.batch_iterator(4))
    >>> by.shape
    (4, 3)
    """

    def __init__(
        self,
        labels: Any,
        classes_per_batch: int,
        samples_per_class: int,
        *,
        repeats: int = 1,
        seed: int | None = None,
    ) -> None:
        y = _check_labels(labels)
        self.classes_per_batch = positive_int("classes_per_batch", classes_per_batch)
        self.samples_per_class = positive_int("samples_per_class", samples_per_class)
        self._repeats = repeats_value(repeats)
        self.repeats = repeats
        if seed is not None and not is_int(seed):
            raise TypeError(f"seed must be None or an int, got {seed!r}")
        self.seed = _rng.drawn_key() if seed is None else _rng.SeedKey(int(seed))
        classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        if self.classes_per_batch > len(classes):
            raise ValueError(
                f"classes_per_batch={classes_per_batch!r} exceeds the number of classes in "
                f"labels ({len(classes)})"
            )
        #: The distinct labels, sorted; class ``j`` of the plan is ``classes[j]``.
        self.classes = classes
        self.length = len(y)
        self.batch_size = self.classes_per_batch * self.samples_per_class
        members = np.argsort(inverse.reshape(-1), kind="stable").astype(np.int64)
        self._members = np.split(members, np.cumsum(counts)[:-1])
        self._groups = -(-counts // self.samples_per_class)
        per_batch = -(-int(self._groups.sum()) // self.classes_per_batch)
        #: Batches in one epoch: the fewest in which every sample appears.
        self.batches_per_epoch = max(per_batch, int(self._groups.max()))
        self._digest = zlib.crc32(y.tobytes())

    def num_indices_generated(self) -> Any:
        if self._repeats is None:
            return np.inf
        return self.batches_per_epoch * self.batch_size * self._repeats

    def plan(
        self, batch_size: Any, shuffle: Any = None, *, drop_last: bool = False, shard: Any = None, epoch: int = 0
    ) -> FlatPlan:
        """Return the plan of one run; without ``shuffle`` the sampler's own seed drives it.

        ``shard`` deals out whole batches of each epoch's plan.

        Parameters
        ----------
        batch_size : int or None
            Samples per batch: ``classes_per_batch * samples_per_class``, or ``None``
            for the sampler's own.
        shuffle : None, bool, int, SeedKey, RandomState or Generator
            An int seed or an RNG object for the epochs' draws; ``None`` uses the
            sampler's own ``seed``.
        drop_last : bool, default False
            Keyword-only. No effect: batches are always full.
        shard : None, (rank, num_shards) or ShardSpec
            Keyword-only. This rank's part of every epoch.
        epoch : int, default 0
            Keyword-only. Which pass over the data (see
            :class:`~batchup.samplers.plan.PlanOptions`).

        Returns
        -------
        FlatPlan
            ``batches_per_epoch`` full batches per epoch, ``repeats`` epochs.
        """
        if batch_size is not None:
            bs = positive_int("batch_size", batch_size)
            if bs != self.batch_size:
                raise ValueError(
                    f"batch_size must be classes_per_batch * samples_per_class = {self.classes_per_batch} * "
                    f"{self.samples_per_class} = {self.batch_size} (or None), got {batch_size!r}"
                )
        options = PlanOptions.make(shuffle, drop_last, shard, epoch)
        if options.shuffle is None:
            options = dataclasses.replace(options, shuffle=self.seed)
        identity = {
            "sampler": "balanced", "classes_per_batch": self.classes_per_batch,
            "samples_per_class": self.samples_per_class, "labels_crc": self._digest,
        }
        return FlatPlan(
            self.epoch_plan, self.batches_per_epoch, self.batch_size, self._repeats, options,
            unit=self.batch_size, identity=identity,
        )

    def epoch_plan(self, rng: Any) -> np.ndarray:
        """Return one epoch as an array of shape ``(batches_per_epoch, batch_size)``.

        Parameters
        ----------
        rng : numpy.random.Generator or numpy.random.RandomState
            Drawn from: which classes share each batch, and which members of
            each class.

        Returns
        -------
        numpy.ndarray
            int64 sample indices; row ``b`` is batch ``b``, whose
            ``classes_per_batch`` groups of ``samples_per_class`` indices
            each come from one class.
        """
        n, m = self.classes_per_batch, self.samples_per_class
        n_classes = len(self._members)
        chunks = [_class_groups(rng, members, m) for members in self._members]
        left = self._groups.copy()
        taken = np.zeros(n_classes, np.int64)
        plan = np.empty((self.batches_per_epoch, n, m), np.int64)
        every = np.arange(n_classes)
        for b in range(self.batches_per_epoch):
            to_go = self.batches_per_epoch - b
            forced = np.flatnonzero(left == to_go)
            open_ = np.flatnonzero((left > 0) & (left < to_go))
            need = min(n - len(forced), len(open_))
            chosen = np.concatenate([forced, _pick(rng, open_, need, left[open_])])
            free = np.ones(n_classes, bool)
            free[chosen] = False
            fillers = _pick(rng, every[free], n - len(chosen))
            for j, c in enumerate(rng.permutation(np.concatenate([chosen, fillers]))):
                if free[c]:
                    plan[b, j] = _one_group(rng, self._members[c], m)
                else:
                    plan[b, j] = chunks[c][taken[c]]
                    taken[c] += 1
                    left[c] -= 1
        return plan.reshape(self.batches_per_epoch, n * m)

    def __repr__(self) -> str:
        return (
            f"BalancedSampler(<{self.length} labels, {len(self.classes)} classes>, "
            f"classes_per_batch={self.classes_per_batch}, samples_per_class={self.samples_per_class})"
        )


def _pick(rng: Any, candidates: np.ndarray, k: int, weights: Any = None) -> np.ndarray:
    """Draw ``k`` distinct candidates without replacement, by weight (uniform if None).

    Efraimidis-Spirakis keys ``log(u) / w``; the largest ``k`` keys win and
    come back in the order of their keys, which is the order of drawing.
    """
    if k <= 0:
        return candidates[:0]
    keys = np.log1p(-rng.random(len(candidates)))
    if weights is not None:
        keys = keys / weights
    if k < len(candidates):
        top = np.argpartition(-keys, k - 1)[:k]
    else:
        top = np.arange(len(candidates))
    return candidates[top[np.argsort(-keys[top], kind="stable")]]


def _one_group(rng: Any, members: np.ndarray, m: int) -> np.ndarray:
    """Return ``m`` samples of one class: distinct if possible, else all plus repeats."""
    if len(members) >= m:
        return _pick(rng, members, m)
    extra = members[(rng.random(m - len(members)) * len(members)).astype(np.int64)]
    return rng.permutation(np.concatenate([members, extra]))


def _class_groups(rng: Any, members: np.ndarray, m: int) -> np.ndarray:
    """Shuffle one class and cut it into ``ceil(n_c / m)`` groups of ``m``."""
    n_c = len(members)
    if n_c < m:
        return _one_group(rng, members, m)[None, :]
    perm = rng.permutation(members)
    r = n_c % m
    if r:
        perm = np.concatenate([perm, _pick(rng, perm[: n_c - r], m - r)])
    return perm.reshape(-1, m)


def to_categorical(y: Any, num_classes: Any, dtype: Any = np.float32) -> np.ndarray:
    """Return one-hot rows for the integer labels ``y``.

    Parameters
    ----------
    y : array-like of int
        Labels; the result has shape ``y.shape + (K,)``.
    num_classes : int or 1-D array-like of int
        ``K`` itself (labels in ``range(K)``), or the sorted class values
        (for example :attr:`BalancedSampler.classes`): column ``j`` is then
        the class ``num_classes[j]``.
    dtype : dtype, default float32
        The dtype of the rows.

    Returns
    -------
    numpy.ndarray
        Shape ``y.shape + (K,)``, with a 1 in the column of each label.

    Raises
    ------
    TypeError
        If ``y`` is not integer.
    ValueError
        If a label is not one of the classes.

    Examples
    --------
    >>> to_categorical([0, 2], 3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    >>> to_categorical([10, 30], [10, 20, 30], dtype=int).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer labels, got dtype {y.dtype}")
    if is_int(num_classes):
        k = positive_int("num_classes", num_classes)
        pos = y
        bad = (y < 0) | (y >= k)
    else:
        classes = np.asarray(num_classes)
        if classes.ndim != 1 or classes.size == 0 or classes.dtype.kind not in "iu":
            raise TypeError(f"num_classes must be an int or a 1-D array of class labels, got {num_classes!r}")
        k = len(classes)
        pos = np.clip(np.searchsorted(classes, y), 0, k - 1)
        bad = classes[pos] != y
    if bad.any():
        raise ValueError(f"y holds the label {int(y[bad].flat[0])}, which is not one of the {k} classes")
    out = np.zeros(y.shape + (k,), dtype=dtype)
    np.put_along_axis(out, pos[..., None].astype(np.intp), 1, axis=-1)
    return out


class OneHotLabels:
    """A map function that one-hot encodes one element of every batch.

    ``source.map(OneHotLabels(K))`` replaces the last element of each batch
    (the labels) by :func:`to_categorical` rows; it is a plain picklable
    object, so it also works in process pools.

    Parameters
    ----------
    num_classes : int or 1-D array-like of int
        As in :func:`to_categorical`.
    position : int, default -1
        Which element of the batch holds the labels.
    dtype : dtype, default float32
        The dtype of the one-hot rows.

    Examples
    --------
    >>> OneHotLabels(2)(np.array([5, 6]), np.array([1, 0]))[1].tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """

    def __init__(self, num_classes: Any, position: int = -1, dtype: Any = np.float32) -> None:
        if not is_int(position):
            raise TypeError(f"position must be an int, got {position!r}")
        to_categorical(np.zeros(0, np.int64), num_classes)  # validates num_classes
        self.num_classes = num_classes
        self.position = int(position)
        self.dtype = dtype

    def __call__(self, *batch: Any) -> tuple:
        """Return the batch with the labels at ``position`` one-hot encoded.

        Parameters
        ----------
        *batch : array
            The batch's arrays, as a map function receives them.

        Returns
        -------
        tuple of arrays
            The same arrays, the labels replaced by :func:`to_categorical` rows.
        """
        out = list(batch)
        out[self.position] = to_categorical(out[self.position], self.num_classes, self.dtype)
        return tuple(out)
