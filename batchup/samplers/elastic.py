"""Elastic resume: continue a run checkpointed on ``N`` ranks on ``M`` ranks.

Large jobs are preempted and come back on a different number of machines.
A checkpoint of a :class:`~batchup.samplers.flat.FlatPlan` holds the seed,
the old shard ``(r, N)`` and the number of batches every rank had consumed
(ranks of a data-parallel job move in lockstep, so one rank's position is
every rank's). From that, the samples of the current epoch that no rank has
seen yet can be computed exactly — the *remainder* — without replaying
anything:

* with the strided split, the ``N`` ranks together consumed a prefix of the
  epoch's order (``N * offset`` items); with the contiguous split, the first
  ``offset`` items of every rank's block;
* wrap-around duplicates that padded the old epoch are not part of the
  remainder (every real item they copied was consumed or is still in it).

The resumed run splits the remainder between the ``M`` new ranks with the new
:class:`~batchup.samplers.ShardSpec` (equal counts per rank: ``"pad"``
repeats a few samples, marked by ``last_padding``; ``"drop"`` leaves a few
out), then goes on with normal ``M``-way epochs. Each resume is one *cut*;
a run resumed several times, on several world sizes, keeps the list of its
cuts in its checkpoint, so it can be cut again.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from batchup._checks import is_int
from batchup.samplers.flat import FlatPlan
from batchup.samplers.plan import PlanOptions
from batchup.samplers.sharding import ShardSpec

__all__ = ["ElasticFlatPlan", "remaining_positions"]


def remaining_positions(n_items: int, num_shards: int, split: str, remainder: str, offset: int) -> np.ndarray:
    """Return the positions of an epoch's ``n_items`` not consumed after every rank took ``offset`` items.

    Parameters
    ----------
    n_items : int
        Items in the epoch's global order.
    num_shards : int
        The number of ranks that consumed it.
    split : {'strided', 'contiguous'}
        How those ranks split the epoch (:attr:`ShardSpec.split`).
    remainder : {'pad', 'drop'}
        How they evened out their counts (:attr:`ShardSpec.remainder`).
    offset : int
        Items every rank had consumed of its share.

    Returns
    -------
    numpy.ndarray
        int64 positions in the epoch's global order, increasing: the
        remainder that the resumed run splits between its ranks.

    Raises
    ------
    ValueError
        If ``offset`` is more than a rank's share.

    Examples
    --------
    >>> remaining_positions(10, 3, "strided", "pad", 2).tolist()   # ranks took 0..5; 10, 11 were padding
    [6, 7, 8, 9]
    >>> remaining_positions(10, 3, "contiguous", "pad", 2).tolist()  # blocks [0..3], [4..7], [8..11]
    [2, 3, 6, 7]
    >>> remaining_positions(10, 3, "strided", "drop", 1).tolist()  # item 9 was dropped by this epoch
    [3, 4, 5, 6, 7, 8]
    """
    per = -(-n_items // num_shards) if remainder == "pad" else n_items // num_shards
    if not 0 <= offset <= per:
        raise ValueError(f"the state does not fit this plan: {offset} items per rank consumed, but ranks had {per}")
    if split == "strided":
        pos = np.arange(num_shards * offset, num_shards * per, dtype=np.int64)
    else:
        pos = (np.arange(num_shards)[:, None] * per + np.arange(offset, per)[None, :]).reshape(-1)
    return pos[pos < n_items]


def _cut_json(shard: ShardSpec | None, offset: int) -> list:
    spec = ShardSpec(0, 1) if shard is None else shard
    return [spec.num_shards, spec.split, spec.remainder, int(offset)]


def _check_cut(cut: Any) -> list:
    try:
        n, split, remainder, offset = cut
        ShardSpec(0, n, remainder, split)
        if not is_int(offset) or offset < 0:
            raise ValueError(offset)
    except (TypeError, ValueError) as err:
        raise ValueError(f"malformed state: a resume cut must be [num_shards, split, remainder, offset], got {cut!r}") from err
    return [int(n), split, remainder, int(offset)]


class ElasticFlatPlan(FlatPlan):
    """A :class:`FlatPlan` resumed on another number of ranks.

    Epoch 0 of this run is the remainder of epoch ``start`` of the original
    run (after ``cuts``), split with this plan's shard; the epochs after it
    are the original run's epochs ``start + 1 ...``, split normally. Batch
    numbers continue from ``consumed``.

    Parameters
    ----------
    draw, items, batch_size, repeats, options, unit, identity, legacy_surplus
        As for :class:`FlatPlan`; ``options.shard`` is the new shard.
    start : int
        Keyword-only. The original run's epoch in which the checkpoint lies.
    cuts : list
        Keyword-only. The resumes within that epoch so far, each
        ``[num_shards, split, remainder, offset]``, oldest first.
    consumed : int
        Keyword-only. Batches the original run had handed out (batch numbers
        continue from it).

    Raises
    ------
    ValueError
        If ``start``, ``cuts`` or ``consumed`` are malformed.
    """

    def __init__(
        self,
        draw: Any,
        items: int,
        batch_size: int,
        repeats: int | None,
        options: PlanOptions,
        *,
        unit: int = 1,
        identity: dict | None = None,
        legacy_surplus: bool = False,
        start: int,
        cuts: list,
        consumed: int,
    ) -> None:
        super().__init__(
            draw, items, batch_size, repeats, options, unit=unit, identity=identity, legacy_surplus=legacy_surplus,
            allow_empty=True,
        )
        if not is_int(start) or start < 0 or (repeats is not None and start > repeats):
            raise ValueError(f"malformed state: the resumed epoch {start!r} is not in this run")
        if not is_int(consumed) or consumed < 0:
            raise ValueError(f"malformed state: consumed batches must be an int >= 0, got {consumed!r}")
        self._start = int(start)
        self._cuts = [_check_cut(c) for c in cuts]
        self._consumed = int(consumed)
        shard = options.shard
        left = None if repeats is None else repeats - self._start
        if left == 0:  # resumed exactly at the end of the run
            first = np.zeros(0, np.int64)
            pad = np.zeros(0, bool)
        else:
            rows = self.global_order(self._start)
            for n, split, remainder, offset in self._cuts:
                rows = rows[remaining_positions(len(rows), n, split, remainder, offset)]
            if shard is None:
                first, pad = rows, np.zeros(len(rows), bool)
            else:
                first, pad = shard.select(rows), shard.padding(len(rows))
            first = np.asarray(first).reshape(-1).astype(np.int64, copy=False)
            pad = np.repeat(pad, self._unit)
        self._first = first
        self._first_pad = pad
        m0, m = len(first), self.samples_per_epoch
        assert self.batch_size is not None
        bs = self.batch_size
        if left is None:
            count, samples, self._total = None, np.inf, None
        else:
            total = m0 + max(left - 1, 0) * m
            self._total = total
            count, samples = (total // bs if options.drop_last else -(-total // bs)), total
        self.num_batches, self.num_samples = count, samples

    # -- geometry -------------------------------------------------------------------------
    def _locate(self, p: int) -> tuple:
        m0 = len(self._first)
        if p < m0:
            return 0, p
        e, off = divmod(p - m0, self.samples_per_epoch)
        return e + 1, off

    def _epoch_len(self, e: int) -> int:
        return len(self._first) if e == 0 else self.samples_per_epoch

    def _rank_order(self, e: int) -> np.ndarray:
        return self._first if e == 0 else super()._rank_order(self._start + e)

    def _pad_of(self, e: int) -> np.ndarray:
        return self._first_pad if e == 0 else super()._pad_of(e)

    def batch_number(self, b: int) -> int:
        """Return the number a seeded ``map`` derives batch ``b``'s generator from.

        Parameters
        ----------
        b : int
            The batch's position in the resumed run.

        Returns
        -------
        int
            ``consumed + b``: the numbering of the original run continues.
        """
        return self._consumed + b

    def _geometry(self) -> dict:
        geo = super()._geometry()
        geo["resume"] = {"start": self._start, "cuts": [list(c) for c in self._cuts], "consumed": self._consumed}
        return geo

    def reseeded(self, key: Any) -> FlatPlan:
        return self._with(dataclasses.replace(self.options, shuffle=key), self._start, self._cuts, self._consumed)


def rebuild(plan: FlatPlan, fingerprint: Mapping[str, Any]) -> FlatPlan:
    """Return the plan a checkpoint was taken from: ``plan`` with the checkpoint's shard and resume cuts."""
    shard_json = fingerprint.get("shard")
    try:
        shard = None if shard_json is None else ShardSpec(*shard_json)
    except (TypeError, ValueError) as err:
        raise ValueError(f"malformed state: shard must be [rank, num_shards, remainder, split], got {shard_json!r}") from err
    options = dataclasses.replace(plan.options, shard=shard)
    resume = fingerprint.get("resume")
    if resume is None:
        return plan._with(options)
    if not isinstance(resume, Mapping):
        raise ValueError(f"malformed state: resume must be a dict, got {resume!r}")
    try:
        return plan._with(options, resume["start"], list(resume["cuts"]), resume["consumed"])
    except KeyError as err:
        raise ValueError(f"malformed state: the field 'resume.{err.args[0]}' is missing") from err


def resume_on(plan: FlatPlan, fingerprint: Mapping[str, Any], position: int) -> tuple:
    """Return ``(plan, position)``: the checkpointed run continued with ``plan``'s shard.

    Raises
    ------
    ValueError
        If the position lies inside a whole-batch item (balanced batches
        can only be re-split at batch boundaries) or does not fit.
    """
    old = rebuild(plan, fingerprint)
    position = old.check_position(position)
    new_shard = plan.options.shard
    if old.options.shard == new_shard:
        return old, position
    if _same_world(old.options.shard, new_shard):
        # Every rank is at the same position: another rank of the same world simply continues its own share.
        return rebuild(plan, dict(fingerprint, shard=None if new_shard is None else new_shard.to_json())), position
    assert plan.batch_size is not None
    p = position * plan.batch_size
    total = old._total
    if total is not None and p >= total:
        start, offset = plan._repeats or 0, 0
        cuts: list = []
    else:
        e, offset = old._locate(p)
        if offset % old._unit:
            raise ValueError(
                f"cannot resume on {_ranks(plan.options.shard)} ranks here: the checkpoint lies inside one of "
                f"the sampler's items of {old._unit} samples (a balanced batch); resume at a batch boundary"
            )
        if isinstance(old, ElasticFlatPlan):
            start = old._start + e
            cuts = list(old._cuts) if e == 0 else []
        else:
            start, cuts = e, []
        if offset:
            cuts.append(_cut_json(old.options.shard, offset // old._unit))
    return plan._with(plan.options, start, cuts, old.batch_number(position)), 0


def _same_world(a: ShardSpec | None, b: ShardSpec | None) -> bool:
    if a is None or b is None:
        return False
    return (a.num_shards, a.remainder, a.split) == (b.num_shards, b.remainder, b.split)


def _ranks(shard: ShardSpec | None) -> int:
    return 1 if shard is None else shard.num_shards
