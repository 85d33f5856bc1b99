"""The checks of the conformance suite, one function per test (see ``cases.py`` for the design).

:func:`check_driver` compares one driver with the serial core on one case:
identical batches (dtypes included), ``len`` equal to the count yielded, the
same ``last_padding``, resuming at every k-th step, checkpoints moved
between the driver and the core (restored into a source built anew), and
for a source that fails on purpose the same batches before the same error.
:func:`check_counts` checks the core alone: ``num_batches``, ``num_samples``
and ``len`` against what is yielded, batch sizes, zero-weight samples never
drawn, and for shards equal counts and sizes on every rank, each rank's
documented part of the unsharded order (padding masks included), disjoint
and complete together. :func:`check_steps` checks Keras' ``steps_per_epoch``
and :func:`check_adapter_lengths` the torch and Keras ``len()`` over two
epochs. Refusals by design must be the declared error on every driver; any
other error fails the case.
"""
from __future__ import annotations

import collections
import itertools
import json
import re
from typing import Any, Callable

import numpy as np
import pytest

from batchup.adapters._common import resolve_seed
from tests.conformance.cases import (
    ENDLESS_LIMIT,
    SAMPLERS,
    SHARDS,
    SOURCES,
    Case,
    CountCase,
    Driver,
    Env,
    EpochRun,
    Sampler,
    Shard,
    Source,
    available,
    check_message,
    design_refusal,
)
from tests.conformance.drivers import numpy_batch
from tests.helpers import assert_batches_equal, assert_resumes

__all__ = ["Outcome", "check_adapter_lengths", "check_counts", "check_driver", "check_steps", "run_iterator"]


class Outcome:
    """What one iterator gave: the batches, their padding masks, ``len()`` at the start, an error."""

    def __init__(self) -> None:
        self.batches: list = []
        self.paddings: list = []
        self.length: Any = "not asked"
        #: ``len()`` after the first batch (``None``: no length, or no batch).
        self.length_after_first: Any = None
        self.error: BaseException | None = None


def run_iterator(make: Callable, bs: Any, shuffle: Any, options: dict, limit: Any) -> Outcome:
    """Build ``make(bs, shuffle, **options)`` and walk it (at most ``limit`` batches), catching an error."""
    out = Outcome()
    try:
        it = make(bs, shuffle, **options)
        try:
            out.length = len(it)
        except TypeError:
            out.length = None
        for batch in itertools.islice(it, limit):
            out.batches.append(batch)
            out.paddings.append(getattr(it, "last_padding", None))
            if len(out.batches) == 1 and out.length is not None:
                out.length_after_first = len(it)
    except Exception as err:  # noqa: BLE001 - the caller decides whether it was expected
        out.error = err
    return out


def _raise_unexpected(err: BaseException | None, what: str) -> None:
    if err is not None:
        raise AssertionError(f"{what} raised {type(err).__name__}: {err}") from err


def _endless(src: Source, smp: Sampler) -> bool:
    return smp.endless and not src.bounded


def _epochs(drv: Driver, src: Source, smp: Sampler, epoch: int) -> list:
    """The epochs a driver is asked for: ``[epoch]``, two epochs for adapters, ``[0, 1]`` without ``epoch=``."""
    first = 0 if drv.from_epoch_zero else epoch
    if _endless(src, smp) or not drv.walks_epochs:
        return [first]
    return [first, first + 1]


def _expect_refusal(err: BaseException | None, allowed: list, who: str) -> None:
    """Assert ``err`` is one of the ``(type, regex)`` refusals in ``allowed``."""
    if err is None:
        raise AssertionError(f"{who} did not refuse; expected {allowed[0][0].__name__} matching {allowed[0][1]!r}")
    check_message(err)
    for error, match in allowed:
        if isinstance(err, error) and re.search(match, str(err)):
            return
    raise AssertionError(f"{who} raised {type(err).__name__}: {err}; expected one of {allowed}") from err


def _driver_error(drv: Driver, env: Env, ds: Any, smp: Sampler, bs: Any, drop_last: bool, shard: Any,
                  epochs: list, limit: Any) -> BaseException | None:
    """Run the driver on the case to the end; return the error it raised, or None."""
    try:
        run = drv.open(env, ds)
        if drv.kind == "iterator":
            for _ in itertools.islice(run(bs, smp.shuffle(), drop_last=drop_last, shard=shard, epoch=epochs[0]), limit):
                pass
        else:
            run(bs, smp.shuffle(), drop_last, shard, epochs, limit, EpochRun())
    except Exception as err:  # noqa: BLE001
        return err
    return None


class _NumpyView:
    """An iterator that hands out NumPy copies of another's batches, keeping its state methods."""

    def __init__(self, it: Any) -> None:
        self._it = it

    def __iter__(self) -> _NumpyView:
        return self

    def __next__(self) -> Any:
        return numpy_batch(next(self._it))

    def state_dict(self) -> dict:
        return self._it.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self._it.load_state_dict(state)


def _state_after(it: Any, k: int) -> dict:
    for _ in range(k):
        next(it)
    return json.loads(json.dumps(it.state_dict()))


def _tail(it: Any, n: Any) -> list:
    return [numpy_batch(b) for b in itertools.islice(it, n)]


# -- the driver test ----------------------------------------------------------------------------

def check_driver(case: Case, env: Env) -> None:
    """Check one driver against the serial core on every rank of the case (see the module docstring)."""
    src, smp, shard, drv = case.entries()
    if not available(drv.needs):
        pytest.skip(f"{drv.name} needs {', '.join(drv.needs)}")
    ds = src.build(env, smp)
    bs = smp.batch_size
    limit = ENDLESS_LIMIT if _endless(src, smp) else None
    epochs = _epochs(drv, src, smp, case.epoch)
    for rank, rank_shard in enumerate(shard.ranks()):
        where = f"rank {rank} of {shard.num_shards}" if shard.num_shards > 1 else "unsharded"
        refusal = design_refusal(src, smp, shard, epochs[0])
        if refusal is not None:
            core = run_iterator(ds.batch_iterator, bs, smp.shuffle(),
                                dict(drop_last=case.drop_last, shard=rank_shard, epoch=epochs[0]), limit)
            _expect_refusal(core.error, [refusal], f"the serial core ({where})")
            own = drv.refuses(src, smp, shard) if drv.refuses else None
            err = _driver_error(drv, env, ds, smp, bs, case.drop_last, rank_shard, epochs, limit)
            # The core's refusal, or (raised first) one of the driver's own.
            _expect_refusal(err, [refusal] if own is None else [refusal, own], f"{drv.name} ({where})")
            assert type(err) is type(core.error) or (own is not None and isinstance(err, own[0])), (
                f"{drv.name} raised {type(err).__name__} where the core raised {type(core.error).__name__}")
            continue
        own = drv.refuses(src, smp, shard) if drv.refuses else None
        if own is not None:
            err = _driver_error(drv, env, ds, smp, bs, case.drop_last, rank_shard, epochs, limit)
            _expect_refusal(err, [own], f"{drv.name} ({where})")
            continue
        if drv.kind == "iterator":
            options = dict(drop_last=case.drop_last, shard=rank_shard, epoch=epochs[0])
            _check_iterator_driver(drv, env, ds, src, smp, bs, options, limit, where)
        else:
            _check_epoch_driver(drv, env, ds, src, smp, bs, case.drop_last, rank_shard, epochs, limit, where)
        env.close_case()


def _same_failure(src: Source, ref_error: BaseException | None, got_error: BaseException | None, who: str,
                  same_error: Callable | None = None) -> None:
    """Errors in order: where the core failed (a ``fails`` source), the driver fails alike, after the same batches."""
    if ref_error is None or not src.fails:
        _raise_unexpected(ref_error, f"the serial core ({who})")
        _raise_unexpected(got_error, who)
        return
    if got_error is None:
        raise AssertionError(f"{who} did not raise where the serial core raised {type(ref_error).__name__}: {ref_error}")
    if same_error is not None:
        assert same_error(ref_error, got_error), f"{who} raised {type(got_error).__name__}: {got_error}"
        return
    assert type(got_error) is type(ref_error) and str(ref_error) in str(got_error), (
        f"{who} raised {type(got_error).__name__}: {got_error}; the serial core {type(ref_error).__name__}: {ref_error}")


def _check_iterator_driver(drv: Driver, env: Env, ds: Any, src: Source, smp: Sampler, bs: Any, options: dict,
                           limit: Any, where: str) -> None:
    make = drv.open(env, ds)
    ref = run_iterator(ds.batch_iterator, bs, smp.shuffle(), options, limit)
    got = run_iterator(make, bs, smp.shuffle(), options, limit)
    _same_failure(src, ref.error, got.error, f"{drv.name} ({where})", drv.same_error)
    expected = [drv.expect(b) for b in ref.batches] if drv.expect else ref.batches
    assert_batches_equal([numpy_batch(b) for b in got.batches], expected)
    assert_batches_equal(got.paddings, ref.paddings)
    assert got.length == ref.length, f"len() is {got.length} through {drv.name}, {ref.length} serially ({where})"
    if ref.error is not None:
        return
    if ref.length is not None and limit is None:
        assert ref.length == len(ref.batches), f"len() said {ref.length}, {len(ref.batches)} batches came"
        if ref.batches:
            assert got.length_after_first == ref.length_after_first == ref.length - 1, (
                f"len() after one batch: {got.length_after_first} through {drv.name}, "
                f"{ref.length_after_first} serially, of {ref.length}")

    if drv.to_core_state is None:
        return
    n = len(ref.batches)
    every = 2 if n <= 6 else 3
    assert_resumes(lambda: _NumpyView(make(bs, smp.shuffle(), **options)), limit=limit, every=every)
    # A checkpoint moves between this driver and the serial core, in both directions; the core
    # runs on a source built anew (as in a new process), whose drawn seeds the checkpoint overrides.
    k = max(1, n // 2) if n else 0
    left = None if limit is None else limit - k
    state = _state_after(make(bs, smp.shuffle(), **options), k)
    core = src.build(env, smp).batch_iterator(bs, smp.shuffle(), **options)
    core.load_state_dict(drv.to_core_state(state))
    assert_batches_equal(_tail(core, left), ref.batches[k:])
    core_state = _state_after(ds.batch_iterator(bs, smp.shuffle(), **options), k)
    resumed = make(bs, smp.shuffle(), **options)
    resumed.load_state_dict(drv.from_core_state(core_state))
    assert_batches_equal(_tail(resumed, left), expected[k:])


def _check_epoch_driver(drv: Driver, env: Env, ds: Any, src: Source, smp: Sampler, bs: Any, drop_last: bool,
                        shard: Any, epochs: list, limit: Any, where: str) -> None:
    seed = resolve_seed(smp.shuffle())  # the seed rule: an adapter draws its int seed once, like this
    run = EpochRun()
    error = None
    try:
        drv.open(env, ds)(bs, smp.shuffle(), drop_last, shard, epochs, limit, run)
    except Exception as err:  # noqa: BLE001 - compared with the core's below
        error = err
    if run.seed is not ...:
        assert run.seed == seed, f"{drv.name} picked seed {run.seed}, the seed rule gives {seed}"
    refs = []
    for e in epochs:
        ref = run_iterator(ds.batch_iterator, bs, seed, dict(drop_last=drop_last, shard=shard, epoch=e), limit)
        refs.append(ref)
        if ref.error is not None:
            break
    _same_failure(src, refs[-1].error, error, f"{drv.name} ({where}, the core on the adapter's seed)",
                  drv.same_error)
    if run.flat or error is not None:
        want = list(itertools.islice(itertools.chain.from_iterable(r.batches for r in refs), limit))
        got = [numpy_batch(b) for batches in run.epochs for b in batches]
        assert_batches_equal(got, want)
        return
    for e, ref, got, length in zip(epochs, refs, run.epochs, run.lengths):
        assert_batches_equal([numpy_batch(b) for b in got], ref.batches)
        assert length == ref.length, f"len() is {length} through {drv.name}, the core's is {ref.length} (epoch {e})"
        if length is not None:
            assert length == len(got), f"len() said {length}, {len(got)} batches came (epoch {e})"


# -- the core-only tests ---------------------------------------------------------------------------

def _count_entries(case: CountCase) -> tuple:
    return SOURCES[case.source], SAMPLERS[case.sampler], SHARDS[case.shard]


def check_counts(case: CountCase, env: Env) -> None:
    """Check the core's counts, lengths and batch sizes, and (sharded) equal ranks and coverage."""
    src, smp, shard = _count_entries(case)
    ds = src.build(env, smp)
    bs = smp.batch_size
    endless = _endless(src, smp)
    limit = ENDLESS_LIMIT if endless else None
    refusal = design_refusal(src, smp, shard, case.epoch)
    runs = []
    for rank, rank_shard in enumerate(shard.ranks()):
        options = dict(drop_last=case.drop_last, shard=rank_shard, epoch=case.epoch)
        out = run_iterator(ds.batch_iterator, bs, smp.shuffle(), options, limit)
        if refusal is not None:
            _expect_refusal(out.error, [refusal], f"the serial core (rank {rank})")
            continue
        _raise_unexpected(out.error, f"the serial core (rank {rank})")
        runs.append(out)
        n = len(out.batches)
        count = ds.num_batches(bs, shuffle=smp.shuffle(), **options)
        samples = ds.num_samples(shuffle=smp.shuffle(), **options)
        yielded = sum(len(src.ids(b)) for b in out.batches)
        if endless:
            assert count == np.inf and samples == np.inf and out.length is None, (count, samples, out.length)
        else:
            if count is None:
                assert smp.rng_object and src.unknown_count_with_rng, "num_batches is unknown"
                assert out.length is None
            else:
                assert count == n == out.length, f"num_batches {count}, len() {out.length}, {n} batches came"
            if src.exact_samples(smp):
                if case.drop_last and bs is None:
                    assert samples >= yielded, f"num_samples {samples} < {yielded} samples yielded"
                elif case.drop_last:
                    assert 0 <= samples - yielded < bs, f"num_samples {samples}, {yielded} samples came"
                else:
                    assert samples == yielded, f"num_samples {samples}, {yielded} samples came"
            else:
                assert samples >= yielded, f"num_samples {samples} < {yielded} samples yielded"
        drawn = set(np.concatenate([src.ids(b) for b in out.batches]).tolist()) if out.batches else set()
        assert not drawn & smp.never, f"drew {sorted(drawn & smp.never)}, which have weight 0"
        sizes = [len(src.ids(b)) for b in out.batches]
        if bs is None:
            pass  # the sampler sizes its batches (bucketing): nothing to compare with
        elif case.drop_last or (smp.whole_batches and src.short_only_last):
            assert all(s == bs for s in sizes), f"batch sizes {sizes} with drop_last"
        elif src.short_only_last:
            assert all(s == bs for s in sizes[:-1]) and (not sizes or 0 < sizes[-1] <= bs), f"batch sizes {sizes}"
    if refusal is not None or shard.num_shards == 1:
        return
    sizes = [[len(src.ids(b)) for b in r.batches] for r in runs]
    assert all(s == sizes[0] for s in sizes), f"ranks differ in batch counts or sizes: {sizes}"
    if src.coverage and not smp.endless:
        _check_coverage(ds, src, smp, shard, case.epoch, case.drop_last, runs)


def _check_coverage(ds: Any, src: Source, smp: Sampler, shard: Shard, epoch: int, drop_last: bool,
                    runs: list) -> None:
    """Each rank has its documented part of the unsharded order; together: disjoint and complete.

    With ``drop_last`` each rank's part loses only its own short last batch.
    """
    glob = run_iterator(ds.batch_iterator, smp.batch_size, smp.shuffle(), dict(epoch=epoch), None)
    _raise_unexpected(glob.error, "the unsharded serial core")
    order = np.concatenate([src.ids(b) for b in glob.batches])
    if smp.deals_steps:
        _check_steps_coverage(order, src, shard, drop_last, runs)
        return
    unit = smp.batch_size if smp.whole_batches else 1
    passes = order.reshape(src.repeats, -1, unit)  # the run's epochs, each split into items
    items = passes[0]
    pads = []
    for spec, run in zip(shard.ranks(), runs):
        got = np.concatenate([src.ids(b) for b in run.batches])
        want = np.concatenate([spec.select(p).reshape(-1) for p in passes])
        mask_want = np.tile(np.repeat(spec.padding(len(items)), unit), src.repeats)
        if drop_last and smp.batch_size is not None:
            keep = len(want) // smp.batch_size * smp.batch_size
            want, mask_want = want[:keep], mask_want[:keep]
        assert got.tolist() == want.tolist(), f"rank {spec.rank} took {got.tolist()}, documented {want.tolist()}"
        mask = np.concatenate([np.asarray(src.mask(p), bool) for p in run.paddings])
        assert mask.tolist() == mask_want.tolist(), f"padding of rank {spec.rank}"
        pads.append((got, mask))
    if drop_last:
        return
    real = collections.Counter(x for got, mask in pads for x in got[~mask].tolist())
    kept = len(items) if shard.make(0).remainder == "pad" else shard.num_shards * (len(items) // shard.num_shards)
    expected = collections.Counter(passes[:, :kept].reshape(-1).tolist())
    assert real == expected, "ranks are not disjoint and complete"


def _check_steps_coverage(order: np.ndarray, src: Source, shard: Shard, drop_last: bool, runs: list) -> None:
    """For samplers that deal steps: real samples on all ranks are disjoint per epoch (complete with pad)."""
    real = collections.Counter()
    for run in runs:
        for b, p in zip(run.batches, run.paddings):
            real.update(src.ids(b)[~np.asarray(src.mask(p), bool)].tolist())
    everything = collections.Counter(order.tolist())
    assert all(real[k] <= everything[k] for k in real), "a sample appears on more ranks than epochs"
    if shard.make(0).remainder == "pad" and not drop_last:
        assert real == everything, "the ranks together miss samples of the epoch"


def check_steps(case: CountCase, env: Env) -> None:
    """``steps_per_epoch(ds, bs, drop_last=, shard=)`` is the number of batches of an in-order pass.

    Where a pass needs a seed (weighted samplers; several ranks with a seed drawn by the sampler) it
    is counted with ``shuffle=0``; where the count changes from epoch to epoch (a shuffled,
    non-stratified choice) ``steps_per_epoch`` refuses without ``epoch=`` and counts with it.
    """
    from batchup.adapters.keras import steps_per_epoch

    src, smp, shard = _count_entries(case)
    if smp.weighted and src.count_varies(smp):
        pytest.skip("no in-order pass exists and the count depends on the order: steps_per_epoch is undefined")
    ds = src.build(env, smp)
    bs = smp.batch_size
    for rank_shard in shard.ranks():
        if _endless(src, smp):
            with pytest.raises(ValueError, match="unknown or infinite"):
                steps_per_epoch(ds, bs, drop_last=case.drop_last, shard=rank_shard)
            continue
        # The count of an in-order pass; where none exists (weighted) or ranks need a shared seed,
        # any int seed gives the same count.
        seeded = smp.weighted or (smp.drawn_seed and shard.num_shards > 1)
        shuffle = 0 if seeded else None
        out = run_iterator(ds.batch_iterator, bs, shuffle, dict(drop_last=case.drop_last, shard=rank_shard), None)
        _raise_unexpected(out.error, "the serial core")
        kw = dict(shuffle=shuffle, drop_last=case.drop_last, shard=rank_shard)
        if not ds.plan(bs, **kw).fixed_length:
            with pytest.raises(ValueError, match="changes from epoch to epoch"):
                steps_per_epoch(ds, bs, **kw)
            kw["epoch"] = 0
        assert steps_per_epoch(ds, bs, **kw) == len(out.batches)



def check_adapter_lengths(case: CountCase, env: Env) -> None:
    """``len()`` of the torch dataset (after ``set_epoch(e)``) and the Keras PyDataset (at epoch ``e``)
    is the core's ``num_batches`` for epoch ``e`` on the adapter's seed, for two epochs in a row."""
    from batchup.adapters.keras import as_py_dataset
    from batchup.adapters.torch import as_iterable_dataset

    src, smp, shard = _count_entries(case)
    if design_refusal(src, smp, shard, case.epoch) is not None:
        pytest.skip("refused by design (checked by the driver cases)")
    ds = src.build(env, smp)
    bs = smp.batch_size
    seed = resolve_seed(smp.shuffle())
    for rank_shard in shard.ranks():
        options = dict(drop_last=case.drop_last, shard=rank_shard)
        dset = as_iterable_dataset(ds, bs, shuffle=smp.shuffle(), epoch=case.epoch, **options)
        if _endless(src, smp):
            with pytest.raises(TypeError, match="unknown or infinite"):
                len(dset)
            continue
        pyds = as_py_dataset(ds, bs, shuffle=smp.shuffle(), epoch=case.epoch, **options)
        for e in (case.epoch, case.epoch + 1):
            want = ds.num_batches(bs, shuffle=seed, epoch=e, **options)
            dset.set_epoch(e)
            pyds.set_epoch(e)
            assert len(dset) == want, f"len(torch dataset) at epoch {e} is {len(dset)}, the core's {want}"
            assert len(pyds) == want, f"len(PyDataset) at epoch {e} is {len(pyds)}, the core's {want}"
