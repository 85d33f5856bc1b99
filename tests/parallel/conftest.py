"""Leak guard for every pool test, and a runner for hang-prone child interpreters.

The guard snapshots, before each test, the ``batchup-*`` threads, this
process's descendant processes, its shared-memory segments and its open file
descriptors; after the test it polls for up to :data:`CLOSE` seconds until
all are back to the snapshot (loky's "patience" loop), then fails with the
leftovers.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from batchup.parallel import _shm

_HERE = os.path.dirname(os.path.abspath(__file__))
CLOSE = 5.0
HARD = 60.0
# Helper processes multiprocessing (and joblib's loky) keep for the whole interpreter's life.
_STDLIB_HELPERS = ("resource_tracker import main", "multiprocessing.forkserver")


def _children(root: int) -> set:
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z":
            continue
        parents[int(name)] = int(fields[1])
    out, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return {p for p in out if not _is_stdlib_helper(p)}


def _is_stdlib_helper(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().decode(errors="replace")
    except OSError:
        return True
    return any(h in cmd for h in _STDLIB_HELPERS)


def _threads() -> set:
    return {t.name for t in threading.enumerate() if t.name.startswith("batchup-")}


def _segments() -> set:
    prefix = f"{_shm.PREFIX}{os.getpid()}-"
    out = set()
    for folder in _shm.candidate_dirs():  # /dev/shm, the temp dir fallback, $BATCHUP_SHM_DIR
        try:
            out |= {os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(prefix)}
        except OSError:
            pass
    return out


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def snapshot() -> dict:
    return {"threads": _threads(), "children": _children(os.getpid()), "segments": _segments(), "fds": _fds()}


def leftovers(before: dict, check_fds: bool = True) -> dict:
    now = snapshot()
    left = {
        "threads": now["threads"] - before["threads"],
        "children": now["children"] - before["children"],
        "segments": now["segments"] - before["segments"],
    }
    if check_fds and abs(now["fds"] - before["fds"]) > 2:
        left["fds"] = f"{before['fds']} -> {now['fds']}"
    return {k: v for k, v in left.items() if v}


@pytest.fixture(autouse=True)
def leak_guard(request):
    """Fail a test that leaves a batchup thread, child process, shm segment or fds behind."""
    check_fds = "dask_client" not in request.fixturenames and "dask_cli" not in request.fixturenames
    before = snapshot()
    yield
    deadline = time.monotonic() + CLOSE
    while True:
        gc.collect()
        left = leftovers(before, check_fds)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"leaked after the test: {left}"


def run_child(code: str, timeout: float = HARD, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (with the repository importable); return the result."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), _HERE, full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def start_child(code: str) -> subprocess.Popen:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), _HERE, full_env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
    )


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pids: list, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if not pid_gone(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if not pid_gone(p)]
