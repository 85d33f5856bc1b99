"""Fixtures of the conformance suite: one environment (files, worker pools) per test module.

A plugin that the conformance modules load with ``pytest_plugins`` (not a
``conftest.py``: with ``--doctest-modules`` a ``tests/conformance/conftest.py``
is imported as the module ``conftest`` before ``tests/conftest.py`` is
collected, and the two clash). The pools are created on first use and
shared by every case of a module (starting processes per case would
dominate the run time); they are closed when the module ends. The terminal
summary reports the number of generated cases and the wall time of the
conformance tests that ran.
"""
from __future__ import annotations

import time

import pytest

from tests.conformance.cases import Env

_timing: dict = {"first": None, "last": None, "count": 0}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    shared = Env(tmp_path_factory.mktemp("conformance"))
    yield shared
    shared.close()


@pytest.fixture
def case_env(env):
    """The module's environment; what a case leaves open (prefetching sources, iterators) is closed after it."""
    yield env
    env.close_case()


@pytest.fixture(autouse=True)
def _conformance_clock(request):
    if "conformance" not in request.node.nodeid:
        yield
        return
    start = time.monotonic()
    if _timing["first"] is None:
        _timing["first"] = start
    yield
    _timing["last"] = time.monotonic()
    _timing["count"] += 1


def pytest_terminal_summary(terminalreporter):
    if _timing["count"]:
        from tests.conformance.cases import count_cases, driver_cases

        wall = _timing["last"] - _timing["first"]
        terminalreporter.write_line(
            f"conformance: {len(driver_cases())} pairwise driver cases, {len(count_cases())} count cases "
            f"(x3 checks); {_timing['count']} tests of tests/conformance ran in {wall:.1f} s wall time"
        )
