"""batchup._filelock: filelock when installed, else fcntl (POSIX), else msvcrt (Windows); never silently no lock.

Each backend is run here on this machine: filelock and fcntl for real, and
the msvcrt code path against a stand-in ``msvcrt`` module whose ``locking``
is built on ``flock`` (so the polling loop, the waiting message and the
release are exercised without Windows).
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
import types

import pytest

from batchup import _filelock, config

fcntl = pytest.importorskip("fcntl")  # the stand-in msvcrt and the fcntl cases need POSIX

BACKENDS = ["fcntl", "msvcrt"] + (["filelock"] if _filelock._importable("filelock") else [])


def _fake_msvcrt() -> types.ModuleType:
    mod = types.ModuleType("msvcrt")
    mod.LK_UNLCK, mod.LK_LOCK, mod.LK_NBLCK = 0, 1, 2

    def locking(fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 0  # byte 0, from the start of the file
        if mode == mod.LK_UNLCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(errno.EACCES, "Permission denied") from None

    mod.locking = locking
    return mod


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "msvcrt":
        monkeypatch.setitem(sys.modules, "msvcrt", _fake_msvcrt())
        monkeypatch.setattr(_filelock, "_POLL", 0.005)
    monkeypatch.setattr(_filelock, "backend", lambda: request.param)
    return request.param


def test_the_default_backend_is_filelock_when_installed():
    assert _filelock.backend() == ("filelock" if "filelock" in BACKENDS else "fcntl")


def test_threads_take_turns_and_the_second_says_it_waits(backend, tmp_path, monkeypatch):
    path = str(tmp_path / "data" / "file.bin")
    order, errors, waiting = [], [], threading.Event()
    said = _filelock._waiting

    def spy(p):  # the second thread announces that it waits, then blocks
        said(p)
        waiting.set()

    monkeypatch.setattr(_filelock, "_waiting", spy)

    def second():
        try:
            with _filelock.file_lock(path, root=str(tmp_path / "data")):
                order.append("second")
        except BaseException as err:  # noqa: BLE001 - reported below, with its type
            errors.append(err)

    with _filelock.file_lock(path, root=str(tmp_path / "data")):
        t = threading.Thread(target=second)
        t.start()
        assert waiting.wait(60), f"the second thread never said it was waiting (errors: {errors!r})"
        t.join(0.05)
        assert t.is_alive() and not order, f"the second thread got in while the lock was held: {order!r} {errors!r}"
        order.append("first")
    t.join(10)
    assert not errors
    assert order == ["first", "second"]
    assert os.listdir(tmp_path / "data") == [".locks"] and not (tmp_path / "data" / "file.bin").exists()


def test_the_waiting_message_names_the_file(capsys):
    _filelock._waiting("/some/where/file.bin")
    assert capsys.readouterr().err == "waiting for another process to finish with /some/where/file.bin\n"


def test_lock_files_live_in_one_folder_of_the_root(tmp_path):
    root = str(tmp_path / "data")
    a = _filelock.lock_path(os.path.join(root, "temp", "mnist", "a.gz"), root)
    b = _filelock.lock_path(os.path.join(root, "temp", "fashion-mnist", "a.gz"), root)
    assert os.path.dirname(a) == os.path.dirname(b) == os.path.join(root, ".locks") and a != b
    assert _filelock.lock_path(str(tmp_path / "x.bin"), root) == str(tmp_path / "x.bin") + ".lock"
    assert _filelock.lock_path(root, root) == root + ".lock"  # the root itself is not inside itself


def test_config_lock_gathers_data_dir_locks(tmp_path, monkeypatch):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "home"))
    config.reset_config()
    with config.file_lock(config.get_data_path(os.path.join("temp", "mnist", "a.gz"))):
        pass
    data = tmp_path / "home" / "data"
    assert os.listdir(data) == [".locks"] and len(os.listdir(data / ".locks")) == 1


_HOLDER = textwrap.dedent("""
    import sys
    from batchup import _filelock
    _filelock.backend = lambda: sys.argv[3]
    with _filelock.file_lock(sys.argv[1], root=sys.argv[2]):
        print("HELD", flush=True)
        sys.stdin.readline()
""")


@pytest.mark.parametrize("holder, waiter", [(a, b) for a in ["fcntl", "filelock"] for b in ["fcntl", "filelock"]
                                            if {a, b} <= set(BACKENDS)])
def test_processes_exclude_each_other_whatever_their_backend(tmp_path, holder, waiter):
    """A process without filelock and one with it lock the same file: the second waits for the first."""
    path, root = str(tmp_path / "data" / "f.bin"), str(tmp_path / "data")
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, path, root, holder], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    second = None
    try:
        assert first.stdout.readline().strip() == "HELD"
        second = subprocess.Popen([sys.executable, "-c", _HOLDER, path, root, waiter], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "waiting for another process to finish with" in second.stderr.readline()  # blocked by the first
        first.communicate("\n", timeout=60)
        assert second.stdout.readline().strip() == "HELD"
        second.communicate("\n", timeout=60)
        assert first.returncode == 0 and second.returncode == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(60)


def test_a_killed_holder_does_not_block_the_next(tmp_path, backend):
    if backend == "msvcrt":
        pytest.skip("the stand-in msvcrt cannot run in a child process")
    path, root = str(tmp_path / "data" / "f.bin"), str(tmp_path / "data")
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, path, root, backend], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "HELD"
    child.kill()
    child.wait(60)
    with _filelock.file_lock(path, root=root):
        pass


def test_the_warning_is_public():
    assert config.LockUnavailableWarning is _filelock.LockUnavailableWarning
    assert issubclass(config.LockUnavailableWarning, RuntimeWarning)


def test_no_backend_warns_and_runs_unlocked(tmp_path, monkeypatch):
    monkeypatch.setattr(_filelock, "backend", lambda: "none")
    ran = []
    with pytest.warns(_filelock.LockUnavailableWarning, match=r"no inter-process lock for .*f\.bin \(neither"):
        with _filelock.file_lock(str(tmp_path / "f.bin")):
            ran.append(True)
    assert ran == [True]


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP])
def test_a_file_system_without_locks_warns(tmp_path, monkeypatch, code):
    monkeypatch.setattr(_filelock, "backend", lambda: "fcntl")

    def refuse(fd, op):  # noqa: ANN001
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.warns(_filelock.LockUnavailableWarning, match="the file system refuses flock"):
        with _filelock.file_lock(str(tmp_path / "f.bin")):
            pass


def test_other_lock_errors_are_raised(tmp_path, monkeypatch):
    monkeypatch.setattr(_filelock, "backend", lambda: "fcntl")

    def broken(fd, op):  # noqa: ANN001
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(OSError, match="Bad file descriptor"):
        with _filelock.file_lock(str(tmp_path / "f.bin")):
            pass
