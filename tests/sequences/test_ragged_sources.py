"""A RaggedArray works wherever an array works in a source, checked against the list-of-arrays reference.

The reference for every pipeline is the same pipeline over ``np.arange(n)``
in place of the RaggedArray: its batches are sample indices, and
``[samples[i] for i in batch]`` is what the ragged batch must hold.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchup.samplers import StandardSampler, SubsetSampler
from batchup.sequences import PackSequences, PadBatch, RaggedArray, pad_batch
from batchup.sources import ArrayDataSource, CompositeDataSource
from tests.helpers import assert_resumes, stream
from tests.sequences.strategies import assert_samples_equal


def make_samples(n, seed=0, feat=(), max_length=12):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1000, size=(int(k),) + feat).astype(np.int32) for k in rng.integers(0, max_length, n)]


def check_against_reference(ragged_batches, index_batches, samples):
    assert len(ragged_batches) == len(index_batches)
    for got, idx in zip(ragged_batches, index_batches):
        assert isinstance(got, RaggedArray)
        assert_samples_equal(got, [samples[i] for i in idx])


def flat(x, y):
    """A picklable map that turns the ragged batch into plain arrays (values, offsets)."""
    return x.values, x.offsets.copy(), y


@given(st.integers(0, 60), st.integers(1, 17), st.integers(0, 2**32 - 1), st.integers(1, 3), st.booleans(),
       st.sampled_from([(), (3,)]))
def test_batches_equal_the_list_reference(n, bs, seed, repeats, include, feat):
    samples = make_samples(n, seed % 1000, feat)
    ra = RaggedArray.from_list(samples) if n else RaggedArray(np.zeros((0,) + feat, np.int32), [0])
    y = np.arange(n) * 10
    ds = ArrayDataSource([ra, y], repeats=repeats, include_indices=include)
    ref = ArrayDataSource([np.arange(n), y], repeats=repeats, include_indices=include)
    got = stream(ds.batch_iterator(bs, shuffle=seed))
    want = stream(ref.batch_iterator(bs, shuffle=seed))
    off = 1 if include else 0
    check_against_reference([b[off] for b in got], [b[off] for b in want], samples)
    for g, w in zip(got, want):
        assert np.array_equal(g[off + 1], w[off + 1])
        if include:
            assert np.array_equal(g[0], w[0])
    for b in got:
        if len(b[off]) and len(ra.values):
            assert not np.shares_memory(b[off].values, ra.values)


@given(st.integers(1, 60), st.integers(1, 9), st.integers(0, 2**16), st.booleans())
@settings(max_examples=30)
def test_subsets_and_samplers(n, bs, seed, use_sampler):
    samples = make_samples(n, seed)
    ra = RaggedArray.from_list(samples)
    subset = np.random.default_rng(seed).choice(n, size=max(1, n // 2), replace=False)
    if use_sampler:
        ds = ArrayDataSource([ra], sampler=SubsetSampler(subset, repeats=2))
        ref = ArrayDataSource([np.arange(n)], sampler=SubsetSampler(subset, repeats=2))
    else:
        ds = ArrayDataSource([ra], indices=subset)
        ref = ArrayDataSource([np.arange(n)], indices=subset)
    got = [b[0] for b in ds.batch_iterator(bs, shuffle=seed)]
    want = [b[0] for b in ref.batch_iterator(bs, shuffle=seed)]
    check_against_reference(got, want, samples)
    assert set(np.concatenate(want).tolist()) <= set(subset.tolist())


def test_standard_sampler_in_order_batches():
    samples = make_samples(23)
    ds = ArrayDataSource([RaggedArray.from_list(samples)], sampler=StandardSampler(23))
    got = [b[0] for b in ds.batch_iterator(5)]
    check_against_reference(got, [np.arange(i, min(i + 5, 23)) for i in range(0, 23, 5)], samples)


def test_composite_trims_ragged_batches():
    """A composite cuts every member's batch to the shortest: RaggedArray slices do it."""
    samples = make_samples(7)
    ragged = ArrayDataSource([RaggedArray.from_list(samples)], repeats=-1)
    short = ArrayDataSource([np.arange(10)])
    ds = CompositeDataSource([ragged, short])
    ref = CompositeDataSource([ArrayDataSource([np.arange(7)], repeats=-1), short])
    got = stream(ds.batch_iterator(4, shuffle=3))
    want = stream(ref.batch_iterator(4, shuffle=3))
    check_against_reference([g[0] for g in got], [w[0] for w in want], samples)
    assert [len(g[0]) for g in got] == [len(g[1]) for g in got] == [4, 4, 2]


def test_map_pads_each_batch():
    samples = make_samples(30, feat=(2,))
    ds = ArrayDataSource([RaggedArray.from_list(samples), np.arange(30)]).map(PadBatch(-1, 4, return_mask=True))
    for padded, lengths, mask, y in ds.batch_iterator(8, shuffle=1):
        want, want_lengths, want_mask = pad_batch([samples[i] for i in y], -1, 4, return_mask=True)
        assert np.array_equal(padded, want) and np.array_equal(lengths, want_lengths)
        assert np.array_equal(mask, want_mask)


@pytest.mark.parametrize("shuffle", [None, 7])
def test_resume_at_every_step(shuffle):
    samples = make_samples(29)
    ds = ArrayDataSource([RaggedArray.from_list(samples), np.arange(29)], repeats=2).map(flat)
    reference = assert_resumes(lambda: ds.batch_iterator(6, shuffle=shuffle))
    for values, offsets, y in reference:
        assert_samples_equal(RaggedArray(values, offsets), [samples[i] for i in y])


# -- background workers -------------------------------------------------------------------------------


def _big_ragged(n=3000, seed=5):
    """Values of a few MB, so a process pool stages them in shared memory instead of pickling them."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 200, n)
    return RaggedArray.from_lengths(rng.random((int(lengths.sum()), 4), dtype=np.float32), lengths)


def _assert_same_ragged_batches(got, want):
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert_samples_equal(g[0], w[0].to_list())
        assert np.array_equal(g[1], w[1])


@pytest.mark.parametrize("kind, start_method", [("thread", None), ("process", "fork"), ("process", "spawn")])
def test_prefetch_yields_what_the_serial_twin_yields(kind, start_method):
    ra = _big_ragged()
    assert ra.values.nbytes > 2**20
    ds = ArrayDataSource([ra, np.arange(len(ra))])
    want = stream(ds.batch_iterator(64, shuffle=11))
    with ds.prefetch(2, kind=kind, start_method=start_method, timeout=120) as par:
        got = stream(par.batch_iterator(64, shuffle=11))
    _assert_same_ragged_batches(got, want)


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_prefetch_of_maps_and_resume(kind):
    samples = make_samples(40, feat=(2,))
    ds = ArrayDataSource([RaggedArray.from_list(samples), np.arange(40)])
    with ds.map(PadBatch(return_mask=True)).prefetch(2, kind=kind, timeout=120) as par:
        for padded, lengths, mask, y in par.batch_iterator(8, shuffle=2):
            want = pad_batch([samples[i] for i in y], return_mask=True)
            assert all(np.array_equal(a, b) for a, b in zip((padded, lengths, mask), want))
    with ds.map(flat).prefetch(2, kind=kind, timeout=120) as par:
        assert_resumes(lambda: par.batch_iterator(7, shuffle=3), every=2)


def test_prefetch_of_packing_in_processes():
    samples = make_samples(50, max_length=10)
    nonempty = np.flatnonzero([len(s) > 0 for s in samples])
    ra = RaggedArray.from_list(samples)
    ds = ArrayDataSource([ra, ra], indices=nonempty).map(PackSequences(16))
    with ds.prefetch(2, kind="process", timeout=120) as par:
        got = stream(par.batch_iterator(10, shuffle=4))
    want = stream(ds.batch_iterator(10, shuffle=4))
    assert len(got) == len(want) == -(-len(nonempty) // 10)
    for g, w in zip(got, want):
        assert all(np.array_equal(a, b) for a, b in zip(g, w))
        assert np.array_equal(g[0], g[1])
