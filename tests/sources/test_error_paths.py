"""Error paths of the core that the feature tests do not reach."""
from __future__ import annotations

import numpy as np
import pytest

from batchup._iterator import StatefulIterator
from batchup.pipeline import batch_map_mean
from batchup.samplers import StandardSampler
from batchup.sources import (
    ArrayDataSource,
    CallableDataSource,
    ChoiceDataSource,
    CompositeDataSource,
    IteratorDataSource,
)


class CountingIterator:
    """A user's iterator with its own state_dict."""

    def __init__(self, n):
        self.i, self.n = 0, n

    def __iter__(self):
        return self

    def __next__(self):
        if self.i >= self.n:
            raise StopIteration
        self.i += 1
        return (np.array([self.i]),)

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, state):
        self.i = state["i"]


def test_callable_source_uses_the_users_own_state():
    ds = CallableDataSource(lambda bs, **kw: CountingIterator(5))
    it = ds.batch_iterator(1)
    next(it), next(it)
    state = it.state_dict()
    assert state["inner"] == {"i": 2}
    fresh = ds.batch_iterator(1)
    fresh.load_state_dict(state)
    assert [b[0].tolist() for b in fresh] == [[3], [4], [5]]


def test_callable_state_past_the_end_is_malformed():
    ds = CallableDataSource(lambda bs, **kw: iter([(1,), (2,)]))
    state = ds.batch_iterator(1).state_dict()
    state["count"] = 5
    with pytest.raises(ValueError, match="ended after 2 batches"):
        ds.batch_iterator(1).load_state_dict(state)


def test_iterator_source_argument_errors():
    with pytest.raises(TypeError, match="must be an iterator"):
        IteratorDataSource([1, 2])
    with pytest.raises(TypeError, match="not a callable"):
        IteratorDataSource(iter([]), lambda: 3)


def test_members_must_be_a_list():
    with pytest.raises(TypeError, match="list of data sources"):
        CompositeDataSource(ArrayDataSource([np.arange(3)]))


def test_stratified_member_that_runs_short_is_an_error():
    short = CallableDataSource(lambda bs, **kw: iter([(np.arange(2),)]), 10)
    ds = ChoiceDataSource([short, ArrayDataSource([np.arange(4)])], stratified=True)
    with pytest.raises(ValueError, match="member 0 .* ran out"):
        list(ds.batch_iterator(2))


def test_state_with_the_wrong_number_of_members():
    a = ArrayDataSource([np.arange(4)])
    state = ChoiceDataSource([a, a]).batch_iterator(2).state_dict()
    with pytest.raises(ValueError, match="2 entries in the state but 3"):
        ChoiceDataSource([a, a, a]).batch_iterator(2).load_state_dict(state)
    state = CompositeDataSource([a, a]).batch_iterator(2).state_dict()
    with pytest.raises(ValueError, match="2 entries in the state but 3"):
        CompositeDataSource([a, a, a]).batch_iterator(2).load_state_dict(state)


def test_opaque_rng_cannot_be_checkpointed_once_drawn():
    class Mine:
        def permutation(self, n):
            return np.arange(n)[::-1].copy()

    it = StandardSampler(4).shuffled_indices_batch_iterator(2, Mine())
    assert next(it).tolist() == [3, 2]
    with pytest.raises(TypeError, match="cannot"):
        it.state_dict()


def test_base_iterator_refuses_state():
    with pytest.raises(TypeError, match="cannot be checkpointed"):
        StatefulIterator().state_dict()
    with pytest.raises(TypeError, match="cannot be restored"):
        StatefulIterator().load_state_dict({})


def test_mean_with_a_changing_number_of_results():
    outs = iter([(1.0, 2.0), (1.0,)])
    with pytest.raises(TypeError, match="1 results for one batch but 2"):
        batch_map_mean(lambda x: next(outs), [(np.arange(2),), (np.arange(2),)])
