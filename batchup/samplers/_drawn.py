"""BatchUp 0.2's draw protocol: walking a :class:`FlatPlan` that draws from an RNG object.

``shuffle=RandomState`` (or ``True``, the global NumPy RNG, or a
``Generator``) is drawn from exactly when BatchUp 0.2 draws: lazily at the
first ``next()``, again whenever assembling a batch has to read past the end
of an epoch, and once more (a surplus permutation) when a multi-epoch run
ends. Code that shares its RNG with batchup therefore sees the same numbers
as before. Random access is impossible here (an epoch exists only once it
is drawn), so this cursor walks the plan in order, and its checkpoint holds
the RNG's state at the start of the current epoch and now; restoring redraws
one permutation and leaves the RNG exactly as it was at the checkpoint.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from batchup import _rng
from batchup._iterator import StatefulIterator, check_state
from batchup.samplers.flat import FlatPlan

__all__ = ["DrawnIndexBatchIterator"]


class DrawnIndexBatchIterator(StatefulIterator):
    """Walk a :class:`FlatPlan` whose epochs are drawn from an RNG object, in BatchUp 0.2's order."""

    KIND = "index"

    def __init__(self, plan: FlatPlan) -> None:
        self.plan = plan
        self._rng = plan.options.shuffle
        self._n = plan.samples_per_epoch
        self._bs: int = plan.batch_size or 1  # a FlatPlan always has one
        self._repeats = plan.repeats
        self._drop_last = plan.options.drop_last
        self._order: Any = None  # this epoch's order; None until the first draw
        self._epoch = 0
        self._offset = 0
        self.position = 0
        self._done = False
        self._rng_epoch_start: Any = None
        self.last_padding: Any = None

    def _draw(self, epoch: int) -> None:
        self._rng_epoch_start = _rng.capture_rng_state(self._rng)
        self._order = self.plan.epoch_order(self._rng)

    def __next__(self) -> np.ndarray:
        if self._done:
            raise StopIteration
        if self._order is None:
            self._draw(self._epoch)
        b = self.position
        off = self._offset
        end = off + self._bs
        if end <= self._n:
            self._offset = end
            batch = self._order[off:end].copy()
        else:
            batch = self._next_across_epochs()
        self.position = b + 1
        self.last_padding = self.plan.padding(b)
        return batch

    def _next_across_epochs(self) -> np.ndarray:
        parts = []
        need = self._bs
        n = self._n
        while True:
            k = min(need, n - self._offset)
            if k > 0:
                parts.append(self._order[self._offset : self._offset + k])
                self._offset += k
                need -= k
            if self._offset >= n:
                self._epoch += 1
                if self._repeats is not None and self._epoch >= self._repeats:
                    if self._repeats != 1 and self.plan.legacy_surplus:
                        # BatchUp 0.2 draws one permutation past the last epoch; do the
                        # same so that an RNG shared with other code stays in step.
                        self._rng.permutation(self._n)
                    self._done = True
                    break
                self._draw(self._epoch)
                self._offset = 0
            if need == 0:
                break
        if not parts or (self._drop_last and need > 0):
            self._done = True
            raise StopIteration
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)

    def take_span(self, max_batches: int) -> tuple | None:
        """Take up to ``max_batches`` whole batches lying inside the current epoch: ``(indices, k)`` or ``None``."""
        if self._done or max_batches < 2 or self.plan.options.shard is not None:
            return None
        if self._order is None:
            self._draw(self._epoch)
        k = min(max_batches, (self._n - self._offset) // self._bs)
        if k < 2:
            return None
        off = self._offset
        self._offset = off + k * self._bs
        self.position += k
        return self._order[off : self._offset].copy(), k

    def remaining(self) -> int | None:
        n = self.plan.num_batches
        if self._done:
            return 0
        return None if n is None else n - self.position

    # -- state ----------------------------------------------------------------------------
    def state_dict(self, pending: int = 0) -> dict:
        """Return the position; ``pending`` batches taken by :meth:`take_span` are not yet consumed."""
        if self._order is not None and self._rng_epoch_start is None:
            raise TypeError(f"cannot checkpoint: the state of {self._rng!r} cannot be captured")
        return {
            "kind": self.KIND,
            "plan": self.plan.fingerprint(),
            "position": self.position - pending,
            "started": self._order is not None,
            "epoch": self._epoch,
            "offset": self._offset - pending * self._bs,
            "done": self._done,
            "rng_epoch_start": self._rng_epoch_start,
            "rng_now": _rng.get_rng_state(self._rng),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        where = type(self).__name__
        check_state(state, {"kind": self.KIND, "plan": self.plan.fingerprint()}, where)
        try:
            epoch, offset = int(state["epoch"]), int(state["offset"])
            started, done = bool(state["started"]), bool(state["done"])
            position = self.plan.check_position(state["position"])
            epoch_start, now = state["rng_epoch_start"], state["rng_now"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{where}: malformed state ({err!r})") from err
        if not 0 <= offset <= self._n or epoch < 0 or (self._repeats is not None and epoch > self._repeats):
            raise ValueError(f"{where}: the state does not fit this plan: offset {offset}, epoch {epoch}")
        self._epoch, self._offset, self.position, self._done = epoch, offset, position, done
        self._order = None
        self._rng_epoch_start = None
        self.last_padding = None
        if started:
            _rng.set_rng_state(self._rng, epoch_start)
            self._draw(epoch)
        _rng.set_rng_state(self._rng, now)
