"""Batch plans: the one answer to "which indices form batch *b*?".

A sampler decides which samples form each batch; a *plan* is that decision
for one request: ``sampler.plan(batch_size, shuffle=..., drop_last=...,
shard=..., epoch=...)``. Every consumer asks the plan and nothing else — the
serial iterator, the prefetching iterators, the Keras, torch, JAX and
tf.data adapters, ``steps_per_epoch`` and ``num_samples`` — so the number of
batches, the indices of a batch, its padding mask, its batch number and the
shape of a checkpoint are computed in exactly one place.

A plan is stateless. Plans made from an int seed (or in order) are *random
access*: :meth:`BatchPlan.indices` answers for any position, which is what
lets a Keras ``PyDataset`` serve item ``i`` or torch workers take every
``W``-th batch without replaying the others. Plans that draw from an RNG
object (``shuffle=RandomState``, BatchUp 0.2's protocol) can only be walked
in order, by the iterator they make. :class:`IndexBatchIterator` is the
cursor over a random-access plan: its state is the plan's fingerprint plus
one position.

To write your own sampler, subclass :class:`~batchup.samplers.AbstractSampler`
and implement ``plan`` by returning a :class:`BatchPlan` subclass (see the
guide page "How batches are planned"); a sampler that only implements
BatchUp 0.2's iterator methods still works, through a sequential plan.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from batchup import _rng
from batchup._checks import is_int
from batchup._iterator import StatefulIterator, check_state, normalise
from batchup.samplers.sharding import ShardSpec, as_shard

__all__ = [
    "SeedRequiredError",
    "BatchPlan",
    "IndexBatchIterator",
    "PLAN_OPTIONS",
    "PlanOptions",
    "plan_options",
    "shuffle_fingerprint",
]

#: The keyword arguments that select a plan (besides ``batch_size``), in signature order.
PLAN_OPTIONS = ("shuffle", "drop_last", "shard", "epoch")


class SeedRequiredError(ValueError):
    """Several ranks would each draw their own order: sharding needs an int seed they share."""


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    """The validated options of one plan request (everything but the batch size).

    Parameters
    ----------
    shuffle : None, SeedKey or RNG object
        Already resolved by :func:`batchup._rng.resolve_shuffle`.
    drop_last : bool
        Leave out a final short batch.
    shard : ShardSpec or None
        This rank's part of every epoch.
    epoch : int
        Which pass over the data: pass ``e`` of a run with ``repeats=R``
        covers the sampler's epochs ``e*R .. e*R + R - 1``.
    """

    shuffle: Any = None
    drop_last: bool = False
    shard: ShardSpec | None = None
    epoch: int = 0

    @classmethod
    def make(cls, shuffle: Any = None, drop_last: Any = False, shard: Any = None, epoch: Any = 0) -> PlanOptions:
        """Validate and resolve public spellings (int seeds, ``(rank, n)`` pairs, ...).

        Parameters
        ----------
        shuffle : None, bool, int, SeedKey, RandomState or Generator
            As ``batch_iterator`` takes it.
        drop_last : bool, default False
            Leave out a final short batch.
        shard : None, (rank, num_shards) or ShardSpec
            This rank's part of every epoch.
        epoch : int, default 0
            Which pass over the data, ``>= 0``.

        Returns
        -------
        PlanOptions
            The validated options.

        Raises
        ------
        TypeError
            For a ``drop_last`` that is not a bool, an ``epoch`` that is not an
            int, or a ``shuffle``/``shard`` of the wrong kind.
        ValueError
            For a negative ``epoch`` or an out-of-range seed or rank.
        """
        if isinstance(shuffle, PlanOptions):  # pragma: no cover - defensive
            return shuffle
        if not is_int(epoch):
            raise TypeError(f"epoch must be an int >= 0, got {epoch!r} of type {type(epoch).__name__}")
        if epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        return cls(_rng.resolve_shuffle(shuffle), _bool("drop_last", drop_last), as_shard(shard), int(epoch))

    @property
    def seeded(self) -> bool:
        """True when the order is a pure function of an int seed (or there is no shuffling)."""
        return self.shuffle is None or isinstance(self.shuffle, _rng.SeedKey)


def plan_options(where: str, kwargs: Mapping[str, Any], shuffle: Any = None) -> PlanOptions:
    """Build :class:`PlanOptions` from keyword arguments, rejecting unknown ones.

    Parameters
    ----------
    where : str
        The method name for error messages, e.g. ``"ArrayDataSource.batch_iterator"``.
    kwargs : mapping
        The keyword arguments received (besides ``shuffle``).
    shuffle : optional
        The ``shuffle`` argument when it was passed positionally.

    Returns
    -------
    PlanOptions
        The validated options.

    Raises
    ------
    TypeError
        Naming the first unknown keyword (``shufle=1`` would otherwise be
        silently ignored and give unshuffled batches).

    Examples
    --------
    >>> plan_options("f", {"drop_last": True}, 7).drop_last
    True
    >>> plan_options("f", {"shufle": 1})
    Traceback (most recent call last):
    ...
    TypeError: f() got an unexpected keyword argument 'shufle'; it accepts shuffle, drop_last, shard, epoch
    """
    unknown = [k for k in kwargs if k not in PLAN_OPTIONS or (k == "shuffle" and shuffle is not None)]
    if unknown:
        key = unknown[0]
        if key == "shuffle":
            raise TypeError(f"{where}() got multiple values for argument 'shuffle'")
        raise TypeError(
            f"{where}() got an unexpected keyword argument {key!r}; it accepts {', '.join(PLAN_OPTIONS)}"
        )
    kw = dict(kwargs)
    if shuffle is not None:
        kw["shuffle"] = shuffle
    return PlanOptions.make(**kw)


def shuffle_fingerprint(shuffle: Any) -> dict:
    """Return the state fields that identify how a plan shuffles.

    Parameters
    ----------
    shuffle : None, SeedKey or RNG object
        A resolved ``shuffle`` option (:attr:`PlanOptions.shuffle`).

    Returns
    -------
    dict
        ``{"shuffle": "in_order" | "seed" | "rng", "seed": the seed as JSON or None}``.
    """
    if shuffle is None:
        return {"shuffle": "in_order", "seed": None}
    if isinstance(shuffle, _rng.SeedKey):
        return {"shuffle": "seed", "seed": shuffle.to_json()}
    return {"shuffle": "rng", "seed": None}


class BatchPlan:
    """Which indices form every batch of one run; stateless, asked by every consumer.

    Subclasses set the attributes below in ``__init__`` (through
    :meth:`_setup`) and implement :meth:`indices` (random-access plans) or
    :meth:`iterator` (sequential plans).

    Attributes
    ----------
    options : PlanOptions
        What the plan was asked for (shuffle, drop_last, shard, epoch).
    batch_size : int or None
        The size of every batch but possibly the last, or ``None`` when
        batch sizes vary (bucketing by length).
    num_batches : int or None
        Batches in the run, or ``None`` when endless (or unknown, for a
        sequential plan over a sampler that cannot say).
    num_samples : int, float or None
        Samples this rank's run generates (``np.inf`` endless, ``None``
        unknown), counted before ``drop_last`` cuts a short batch.
    random_access : bool
        Whether :meth:`indices` answers for any position.
    """

    #: Stored under ``"kind"`` in the fingerprint.
    KIND = "plan"

    options: PlanOptions
    batch_size: int | None
    num_batches: int | None
    num_samples: Any
    random_access: bool = True
    #: Whether consecutive whole batches may be taken at once (:meth:`span`).
    spans: bool = False
    #: Whether every pass (``epoch=e``) has the same number of batches. False for plans whose
    #: count depends on the epoch's order (a shuffled, non-stratified choice; length buckets).
    fixed_length: bool = True

    def _setup(
        self, options: PlanOptions, batch_size: int | None, num_batches: int | None, num_samples: Any,
        bound: int | None = None,
    ) -> None:
        """Record the plan's counts; ``bound`` caps the batches of a pass whose count is not known ahead."""
        self.options = options
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.num_samples = num_samples
        if num_batches is None and num_samples == np.inf and options.epoch != 0:
            raise ValueError(
                f"epoch={options.epoch} selects a pass over the data, but an endless run (repeats=-1, or a "
                "weighted stream) is a single pass; use epoch=0, or finite repeats to have passes"
            )
        # Batch numbers stay unique across passes: pass e starts after every batch pass e - 1 could have.
        self._first_number = options.epoch * (num_batches if num_batches is not None else bound or 0)

    # -- what consumers ask --------------------------------------------------------------
    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("this plan has no length: it is endless or its length is unknown")
        return self.num_batches

    @property
    def batch_count(self) -> Any:
        """Batches in the run: an int, ``np.inf`` when endless, ``None`` when unknown."""
        if self.num_batches is not None:
            return self.num_batches
        return np.inf if self.num_samples == np.inf else None

    def indices(self, b: int) -> Any:
        """Return the indices of batch ``b`` (a fresh array, or a tuple of them for composites).

        Parameters
        ----------
        b : int
            The batch's position in the run, ``0 <= b < num_batches``.

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            1-D ``intp`` absolute sample indices.

        Raises
        ------
        TypeError
            For a plan that can only be walked in order (the base class's answer).
        """
        raise TypeError(
            f"{type(self).__name__} draws from an RNG object and can only be walked in order; "
            "pass an int seed (shuffle=<int>) for random access"
        )

    def padding(self, b: int) -> Any:
        """Return the padding mask of batch ``b`` (True for wrap-around duplicates), or ``None``.

        Parameters
        ----------
        b : int
            The batch's position in the run.

        Returns
        -------
        numpy.ndarray of bool or None
            One flag per sample of the batch for rank-sharded plans that pad
            by wrapping around; ``None`` when no sample is padding.
        """
        return None

    def batch_number(self, b: int) -> int:
        """Return the number a seeded ``map`` derives batch ``b``'s generator from.

        Unique over all passes of a finite run: ``epoch * num_batches + b``.

        Parameters
        ----------
        b : int
            The batch's position in the run.

        Returns
        -------
        int
            The batch number.
        """
        return self._first_number + b

    def span(self, b: int, k: int) -> tuple | None:
        """Return ``(indices, j)``: the ``j <= k`` whole batches from ``b`` concatenated, or ``None``.

        Plans whose :attr:`spans` is True hand out several consecutive
        batches that lie in one epoch as one array, so a gatherer can fetch
        them with one NumPy call; ``j`` is at least 2.

        Parameters
        ----------
        b : int
            The position of the first batch.
        k : int
            The most batches wanted.

        Returns
        -------
        tuple of (numpy.ndarray, int) or None
            The concatenated indices and the number of batches ``j`` they
            hold; ``None`` when fewer than two can be taken (the base class
            always says ``None``).
        """
        return None

    def check_position(self, b: Any, field: str = "position") -> int:
        """Return ``b`` as an int if it is a position in this plan (``0 .. num_batches``).

        Parameters
        ----------
        b : int
            A position read from a state.
        field : str, default "position"
            The state field it came from, for the message.

        Returns
        -------
        int
            ``b``.

        Raises
        ------
        ValueError
            If ``b`` is not an int or lies outside ``0 .. num_batches``.
        """
        if not is_int(b):
            raise ValueError(f"malformed state: {field} must be an int, got {b!r}")
        top = self.num_batches
        if b < 0 or (top is not None and b > top):
            limit = "an int >= 0" if top is None else f"between 0 and {top} (the batches in this run)"
            raise ValueError(f"the state does not fit this plan: {field} is {b}, but it must be {limit}")
        return int(b)

    # -- checkpoints ---------------------------------------------------------------------
    def restore(self, fingerprint: Any, position: Any, where: str) -> tuple:
        """Return ``(plan, position)`` to continue a checkpoint taken at ``position`` of a plan with ``fingerprint``.

        The default requires the fingerprint to match this plan's (a
        ``ValueError`` names the first field that differs); plans that can
        continue another run (elastic resume on another number of ranks)
        return a plan of their own.

        Parameters
        ----------
        fingerprint : dict
            The ``"plan"`` field of the state.
        position : int
            The ``"position"`` field of the state.
        where : str
            The restoring iterator's name, for the messages.

        Returns
        -------
        tuple of (BatchPlan, int)
            The plan to walk from now on and the position in it.

        Raises
        ------
        ValueError
            If the state belongs to another plan or the position does not fit.
        """
        mine = self.fingerprint()
        if isinstance(fingerprint, Mapping):
            differ = {k for k in mine if normalise(fingerprint.get(k)) != normalise(mine[k])}
            if "shard" in differ and differ <= {"shard", "members"}:
                raise ValueError(
                    f"{where}: the state was saved with shard={fingerprint.get('shard')!r} but this iterator has "
                    f"shard={mine['shard']!r}, and a {type(self).__name__} cannot resume on another number of "
                    "ranks; restore on the same shard"
                )
        check_state(fingerprint, mine, where, "plan.")
        return self, self.check_position(position)

    def fingerprint(self) -> dict:
        """Return the fields a state must match to belong to this plan (JSON values).

        Returns
        -------
        dict
            ``kind``, the sampler's identity, the shuffle fields of
            :func:`shuffle_fingerprint`, ``batch_size``, ``drop_last``,
            ``shard``, ``epoch`` and how the run is cut.
        """
        o = self.options
        fp: dict[str, Any] = {"kind": self.KIND}
        fp.update(self._identity())
        fp.update(shuffle_fingerprint(o.shuffle))
        fp.update(
            batch_size=self.batch_size,
            drop_last=o.drop_last,
            shard=None if o.shard is None else o.shard.to_json(),
            epoch=o.epoch,
        )
        fp.update(self._geometry())
        return fp

    def _identity(self) -> dict:
        """Return the fields that identify the sampler (its length, a digest of its weights, ...)."""
        return {}

    def _geometry(self) -> dict:
        """Return the fields that describe how the run is cut (checked after the options)."""
        return {}

    def adopt(self, fingerprint: Any) -> BatchPlan:
        """Return this plan with a drawn seed replaced by the one in ``fingerprint``.

        A sampler given no seed draws one where it is built; a checkpoint of
        it carries that seed, and restoring into a freshly built sampler
        takes the checkpoint's seed, so unseeded runs can resume.

        Parameters
        ----------
        fingerprint : dict
            The ``"plan"`` field of a state.

        Returns
        -------
        BatchPlan
            ``self``, or the same plan on the checkpoint's seed.
        """
        key = self.options.shuffle
        if isinstance(key, _rng.SeedKey) and key.drawn and isinstance(fingerprint, Mapping):
            if fingerprint.get("shuffle") == "seed":
                saved = _rng.key_from_json(fingerprint.get("seed"))
                if saved != key:
                    return self.reseeded(_rng.SeedKey(saved.seed, saved.path, True))
        return self

    def reseeded(self, key: _rng.SeedKey) -> BatchPlan:
        """Return the same plan on another seed (used by :meth:`adopt`).

        Parameters
        ----------
        key : SeedKey
            The seed to use instead.

        Returns
        -------
        BatchPlan
            A new plan, otherwise equal to this one.

        Raises
        ------
        TypeError
            If the plan cannot change its seed (the base class's answer).
        """
        raise TypeError(f"{type(self).__name__} cannot change its seed")

    def iterator(self) -> Any:
        """Return a fresh cursor at position 0 (an :class:`IndexBatchIterator` for random-access plans).

        Returns
        -------
        iterator
            Yields the batches' index arrays in order, with ``state_dict()``
            and ``load_state_dict()``.
        """
        return IndexBatchIterator(self)


class IndexBatchIterator(StatefulIterator):
    """Walk a random-access :class:`BatchPlan` batch by batch; the state is one position.

    Parameters
    ----------
    plan : BatchPlan
        A random-access plan to walk from its first batch.

    Attributes
    ----------
    plan : BatchPlan
        What is walked.
    position : int
        Batches handed out so far; the next batch is ``plan.indices(position)``.
    last_padding : ndarray or None
        The padding mask of the batch handed out last (sharded plans).
    """

    KIND = "index"

    def __init__(self, plan: BatchPlan) -> None:
        self.plan = plan
        self.position = 0
        self.last_padding: Any = None

    def __next__(self) -> Any:
        b = self.position
        n = self.plan.num_batches
        if n is not None and b >= n:
            raise StopIteration
        indices = self.plan.indices(b)
        self.position = b + 1
        self.last_padding = self.plan.padding(b)
        return indices

    def take_span(self, max_batches: int) -> tuple | None:
        """Take up to ``max_batches`` whole batches at once: ``(indices, k)``, or ``None``.

        Used by gatherers that fetch several batches with one NumPy call;
        :meth:`state_dict` takes the number not yet handed out.

        Parameters
        ----------
        max_batches : int
            The most batches to take.

        Returns
        -------
        tuple of (numpy.ndarray, int) or None
            The concatenated indices and the number of batches taken (the
            position moves past them); ``None`` when fewer than two can be
            taken, leaving the position where it was.
        """
        plan = self.plan
        if not plan.spans or max_batches < 2:
            return None
        b = self.position
        n = plan.num_batches
        k = max_batches if n is None else min(max_batches, n - b)
        if k < 2:
            return None
        out = plan.span(b, k)
        if out is None:
            return None
        indices, k = out
        self.position = b + k
        return indices, k

    def remaining(self) -> int | None:
        n = self.plan.num_batches
        return None if n is None else n - self.position

    def state_dict(self, pending: int = 0) -> dict:
        """Return ``{"kind", "plan": fingerprint, "position"}``; ``pending`` batches are not yet consumed.

        Parameters
        ----------
        pending : int, default 0
            Batches taken from this cursor but not yet handed to the consumer
            (held by a prefetcher); the saved position leaves them out.

        Returns
        -------
        dict
            ``kind``, ``plan`` (the plan's fingerprint) and ``position``.
        """
        return {"kind": self.KIND, "plan": self.plan.fingerprint(), "position": self.position - pending}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        where = type(self).__name__
        check_state(state, {"kind": self.KIND}, where)
        if "plan" not in state or "position" not in state:
            missing = "plan" if "plan" not in state else "position"
            raise ValueError(f"{where}: malformed state, the field {missing!r} is missing")
        plan, position = self.plan.adopt(state["plan"]).restore(state["plan"], state["position"], where)
        self.plan, self.position = plan, position
        self.last_padding = None
