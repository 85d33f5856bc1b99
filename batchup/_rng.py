"""The one place where random number generators are made and inspected.

batchup shuffles in two ways:

* **Seeded** (``shuffle=<int>``): the order of epoch ``e`` is a pure function
  of ``(seed, e)``; a :class:`SeedKey` derives an independent
  :class:`numpy.random.Generator` for every purpose from the seed and a path
  of integers, so nothing has to be replayed to resume.
* **Drawn from an object** (``shuffle=True`` or a ``RandomState`` /
  ``Generator``): permutations are drawn from that object in the order
  BatchUp 0.2 draws them, so that existing code reproduces its old streams.
  The object's state can be captured and restored as plain JSON.

No other module creates generators, and the global NumPy RNG is touched only
when the user asked for it with ``shuffle=True``.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Union

import numpy as np

from batchup._checks import is_int

__all__ = [
    "SEED_MAX",
    "SeedKey",
    "as_generator",
    "capture_rng_state",
    "drawn_key",
    "fresh_seed",
    "key_from_json",
    "legacy",
    "get_rng_state",
    "resolve_shuffle",
    "set_rng_state",
]

#: Largest accepted integer seed; the same range as ``np.random.RandomState``.
SEED_MAX = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class SeedKey:
    """An integer seed plus a path that names one independent random stream.

    ``SeedKey(5).child(1)`` and ``SeedKey(5).child(2)`` give unrelated
    streams; ``generator(epoch)`` gives the generator for one epoch of one
    stream. Keys are cheap, hashable and picklable.

    Examples
    --------
    >>> key = SeedKey(42)
    >>> a = key.generator(0).permutation(5)
    >>> b = SeedKey(42).generator(0).permutation(5)
    >>> bool((a == b).all())
    True
    """

    seed: int
    path: tuple = ()
    #: True for a seed drawn from OS entropy because the user gave none: a
    #: checkpoint's seed replaces it on restore, so unseeded runs resume too.
    drawn: bool = dataclasses.field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not is_int(self.seed) or not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"seed must be an int in [0, {SEED_MAX}], got {self.seed!r}")

    def child(self, *path: int) -> SeedKey:
        """Return the key of a sub-stream (for a member source, a worker, ...)."""
        return SeedKey(self.seed, self.path + tuple(int(p) for p in path), self.drawn)

    def generator(self, *path: int) -> np.random.Generator:
        """Return a fresh ``Generator`` for the stream ``self.path + path``."""
        seq = np.random.SeedSequence(self.seed, spawn_key=self.path + tuple(int(p) for p in path))
        return np.random.Generator(np.random.PCG64(seq))

    def to_json(self) -> list:
        return [int(self.seed), [int(p) for p in self.path]]


#: What a resolved ``shuffle`` argument can be: in order, a seed, or an RNG object.
Shuffle = Union[None, SeedKey, Any]


def fresh_seed() -> int:
    """Draw a new seed from OS entropy (used for ``seed=None`` that must resume)."""
    return int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])


def drawn_key() -> SeedKey:
    """Return a :class:`SeedKey` on a fresh seed, marked as drawn (a checkpoint may replace it)."""
    return SeedKey(fresh_seed(), (), True)


def key_from_json(value: Any, field: str = "seed") -> SeedKey:
    """Rebuild a :class:`SeedKey` from its :meth:`SeedKey.to_json` form.

    Raises
    ------
    ValueError
        If ``value`` is not ``[seed, [path ints]]``.
    """
    try:
        seed, path = value
        return SeedKey(int(seed), tuple(int(p) for p in path))
    except (TypeError, ValueError) as err:
        raise ValueError(f"malformed state: {field} must be [seed, [path...]], got {value!r}") from err


def resolve_shuffle(shuffle: Any) -> Shuffle:
    """Translate a public ``shuffle`` value to ``None``, a SeedKey or an RNG object.

    ===========================================  ======================================
    ``shuffle``                                  result
    ===========================================  ======================================
    ``False``, ``None``, ``np.False_``           ``None``: in order
    ``True``, ``np.True_``                       the legacy global RNG (``np.random``)
    an int or NumPy integer                      ``SeedKey(seed)``
    a ``SeedKey``                                itself
    ``RandomState``, ``Generator``, duck types   the object itself, drawn from
    ===========================================  ======================================

    Raises
    ------
    TypeError
        For any other kind of value (a string, a float, ...).
    ValueError
        For an integer seed outside ``[0, 2**32 - 1]``.
    """
    if shuffle is None or shuffle is False:
        return None
    if shuffle is True:
        return np.random
    if isinstance(shuffle, np.bool_):
        return np.random if bool(shuffle) else None
    if isinstance(shuffle, SeedKey):
        return shuffle
    if is_int(shuffle):
        if not 0 <= shuffle <= SEED_MAX:
            raise ValueError(f"shuffle: an int seed must be in [0, {SEED_MAX}], got {shuffle!r}")
        return SeedKey(int(shuffle))
    if isinstance(shuffle, (np.random.RandomState, np.random.Generator)):
        return shuffle
    if isinstance(shuffle, types.ModuleType) and shuffle is np.random:
        return shuffle
    if callable(getattr(shuffle, "permutation", None)):
        return shuffle
    raise TypeError(
        "shuffle must be False/None (in order), True (global NumPy RNG), an int seed, "
        f"a np.random.RandomState or a np.random.Generator; got {shuffle!r}"
    )


def as_generator(rng: Shuffle) -> Any:
    """Return an object with ``permutation``/``choice``/``shuffle`` for ``rng``.

    Used to hand a seeded stream to code written for RandomState-like objects
    (for example a user's own sampler).
    """
    if isinstance(rng, SeedKey):
        return rng.generator()
    return rng


def legacy(rng: Any) -> Any:
    """Return the global ``RandomState`` for ``np.random`` (``shuffle=True``), else ``rng`` itself."""
    return np.random.mtrand._rand if rng is np.random else rng


def get_rng_state(rng: Any) -> dict:
    """Return the state of a RandomState, ``np.random`` or a Generator as JSON data.

    Raises
    ------
    TypeError
        If the object's state cannot be captured (an arbitrary duck-typed RNG).
    """
    rng = legacy(rng)
    if isinstance(rng, np.random.RandomState):
        kind, keys, pos, has_gauss, gauss = rng.get_state(legacy=True)
        return {
            "kind": str(kind),
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        }
    if isinstance(rng, np.random.Generator):
        return {"kind": "generator", "state": _plain(rng.bit_generator.state)}
    raise TypeError(
        f"cannot checkpoint the state of the random number generator {rng!r}; "
        "pass an int seed, a np.random.RandomState or a np.random.Generator"
    )


def capture_rng_state(rng: Any) -> dict | None:
    """Return :func:`get_rng_state` of ``rng``, or ``None`` for an RNG whose state is opaque.

    Iterators record the state this way as they go; only a later
    ``state_dict()`` turns ``None`` into an error.
    """
    try:
        return get_rng_state(rng)
    except TypeError:
        return None


def set_rng_state(rng: Any, state: dict) -> None:
    """Restore a state captured by :func:`get_rng_state` into ``rng``."""
    rng = legacy(rng)
    try:
        if isinstance(rng, np.random.RandomState):
            rng.set_state(
                (
                    state["kind"],
                    np.array(state["keys"], dtype=np.uint32),
                    state["pos"],
                    state["has_gauss"],
                    state["gauss"],
                )
            )
            return
        if isinstance(rng, np.random.Generator):
            rng.bit_generator.state = state["state"]
            return
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed random number generator state: {err}") from err
    raise TypeError(f"cannot restore the state of the random number generator {rng!r}")


def _plain(obj: Any) -> Any:
    """Turn a bit generator state into plain JSON-compatible Python objects."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
