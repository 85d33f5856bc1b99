"""The shuffle argument and RNG state capture."""
from __future__ import annotations

import json

import numpy as np
import pytest

from batchup import _rng


def test_resolve_shuffle_kinds():
    assert _rng.resolve_shuffle(None) is None
    assert _rng.resolve_shuffle(False) is None
    assert _rng.resolve_shuffle(np.False_) is None
    assert _rng.resolve_shuffle(True) is np.random
    assert _rng.resolve_shuffle(np.True_) is np.random
    assert _rng.resolve_shuffle(5) == _rng.SeedKey(5)
    assert _rng.resolve_shuffle(np.uint32(5)) == _rng.SeedKey(5)
    rs = np.random.RandomState(0)
    assert _rng.resolve_shuffle(rs) is rs
    g = np.random.default_rng(0)
    assert _rng.resolve_shuffle(g) is g


def test_seed_keys_give_independent_reproducible_streams():
    k = _rng.SeedKey(9)
    assert k.child(0).generator(1).random() == _rng.SeedKey(9, (0,)).generator(1).random()
    assert k.child(0).generator(1).random() != k.child(1).generator(1).random()
    assert json.loads(json.dumps(k.child(2).to_json())) == [9, [2]]
    with pytest.raises(ValueError, match="seed"):
        _rng.SeedKey(-1)


@pytest.mark.parametrize("make", [lambda: np.random.RandomState(3), lambda: np.random.default_rng(3)])
def test_state_round_trip_through_json(make):
    rng = make()
    rng.random(5) if hasattr(rng, "random") else rng.rand(5)
    state = json.loads(json.dumps(_rng.get_rng_state(rng)))
    a = rng.permutation(10)
    other = make()
    _rng.set_rng_state(other, state)
    assert other.permutation(10).tolist() == a.tolist()


def test_global_rng_state_capture():
    np.random.seed(1)
    state = _rng.get_rng_state(np.random)
    a = np.random.permutation(5)
    _rng.set_rng_state(np.random, state)
    assert np.random.permutation(5).tolist() == a.tolist()


def test_opaque_rng_cannot_be_checkpointed():
    class Mine:
        def permutation(self, n):
            return np.arange(n)

    with pytest.raises(TypeError, match="checkpoint"):
        _rng.get_rng_state(Mine())
    with pytest.raises(ValueError, match="malformed"):
        _rng.set_rng_state(np.random.RandomState(0), {"kind": "MT19937"})


def test_fresh_seed_in_range():
    assert 0 <= _rng.fresh_seed() <= _rng.SEED_MAX
