"""Suite-wide test settings: hypothesis profiles, hang guard, no network, Keras backend."""
from __future__ import annotations

import faulthandler
import os
import socket
import sys

import pytest
from hypothesis import HealthCheck, settings

# Keras must know its backend before it is first imported (jax is the cheapest here).
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TQDM_DISABLE", "1")

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.register_profile("slow", deadline=None, max_examples=15, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A hang anywhere dumps every thread's stack and ends the run instead of freezing CI.
faulthandler.dump_traceback_later(int(os.environ.get("BATCHUP_TEST_HANG_SECONDS", "900")), exit=True)

_real_connect = socket.socket.connect
_LOCAL = ("127.", "::1", "localhost")


def _guarded_connect(self, address):  # noqa: ANN001
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6):
        if not host.startswith(_LOCAL) and os.environ.get("BATCHUP_NETWORK_TESTS") != "1":
            raise OSError(f"tests may not reach the network (tried to connect to {host!r})")
    return _real_connect(self, address)


socket.socket.connect = _guarded_connect


def pytest_collection_modifyitems(config, items):  # noqa: ANN001
    if os.environ.get("BATCHUP_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs the network: set BATCHUP_NETWORK_TESTS=1")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):  # noqa: ANN001
    return f"python {sys.version.split()[0]}, hypothesis profile {settings._current_profile}"
