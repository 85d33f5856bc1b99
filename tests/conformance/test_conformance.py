"""Conformance: every driver gives the serial core's batches, counts, lengths and checkpoints.

The design and the rules (the reference, the seed rule for adapters,
refusals by design, known bugs) are in ``cases.py``; the checks in
``harness.py``. ``python -m tests.conformance.cases`` prints the design.

A case hit by a registered known bug is a strict expected failure: it is
reported as xfailed while it fails, and fails ("remove the entry") once the
bug is fixed. (It is done imperatively rather than with the xfail marker:
pytest formats a full traceback for every marked failure, which would cost
more than the hundreds of cases themselves.)
"""
from __future__ import annotations

import pytest

from tests.conformance.cases import (
    DRIVERS,
    FACTORS,
    SAMPLERS,
    SHARDS,
    SOURCES,
    Combo,
    count_cases,
    driver_cases,
    known_bug,
)
from tests.conformance.harness import check_adapter_lengths, check_counts, check_driver, check_steps
from tests.conformance.registry import _allowed, _values

pytest_plugins = ["tests.conformance.fixtures"]


def _run(check, case, env, reason):
    if reason is None:
        check(case, env)
        return
    failure = None
    try:
        check(case, env)
    except Exception as err:  # noqa: BLE001 - any failure of a known-bug case is the bug
        failure = f"{reason} [{type(err).__name__}: {str(err)[:200]}]"
    # Outside the except block, so the report does not format the (long) chained traceback.
    if failure is not None:
        pytest.xfail(failure)
    pytest.fail(f"this case passes now; remove the register_known_bug entry: {reason}", pytrace=False)


def _count_reason(check, case):
    src, smp, shard = SOURCES[case.source], SAMPLERS[case.sampler], SHARDS[case.shard]
    return known_bug(check, Combo(src, smp, shard, None, case.epoch, case.drop_last))


def test_every_pair_of_values_meets():
    """The design covers every pair of values of two factors (the all-pairs promise), the same on every run."""
    values = _values()
    cases = [vars(c) for c in driver_cases()]
    seen = {(f, c[f], g, c[g]) for c in cases for i, f in enumerate(FACTORS) for g in FACTORS[i + 1:]}
    for i, f in enumerate(FACTORS):
        for g in FACTORS[i + 1:]:
            for a in values[f]:
                for b in values[g]:
                    if _allowed({f: a, g: b}):
                        assert (f, a, g, b) in seen, f"{f}={a!r} never meets {g}={b!r}"
    assert driver_cases() == driver_cases()
    assert set(DRIVERS) <= {c["driver"] for c in cases}


@pytest.mark.parametrize("case", driver_cases(), ids=lambda c: c.id)
def test_driver_gives_the_core_batches(case, case_env):
    combo = Combo(*case.entries(), case.epoch, case.drop_last)
    _run(check_driver, case, case_env, known_bug("driver", combo))


@pytest.mark.parametrize("case", count_cases(), ids=lambda c: c.id)
def test_core_counts_and_shards(case, case_env):
    _run(check_counts, case, case_env, _count_reason("counts", case))


@pytest.mark.parametrize("case", count_cases(), ids=lambda c: c.id)
def test_steps_per_epoch_counts_an_in_order_pass(case, case_env):
    _run(check_steps, case, case_env, _count_reason("steps", case))


@pytest.mark.parametrize("case", count_cases(), ids=lambda c: c.id)
def test_adapter_lengths_follow_the_epoch(case, case_env):
    _run(check_adapter_lengths, case, case_env, _count_reason("lengths", case))
