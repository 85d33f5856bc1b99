"""Fork templates: the snapshot a ``fork`` pool's workers are made from.

Under ``fork`` a worker sees the parent's memory as it was when the worker
was forked. Forking each worker from the parent would let a replacement (or
a worker started later) see changes the parent made since the source was
shared, and an epoch could then mix old and new values. So the pool forks a
*template* process from the parent once, at the moment that defines the
snapshot (pool creation, or sharing a large source), and the template forks
every worker of that generation, replacements included: all of them see the
same memory, whatever the parent does afterwards.

The template is single-threaded, so forking from it is safe whatever threads
the parent runs by then. It reaps its children and reports each exit
(``pid``, wait status) on an event pipe the pool's collector thread watches;
killing a worker goes through it too, so a pid is only ever signalled while
its process is known to be alive. The template exits when the pool closes
its control socket or when the pool's process dies.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any

from batchup.parallel._shm import close_quietly

__all__ = ["Template"]

_MSG = struct.Struct("=4sqq")  # op, a, b: fixed size, so a stream socket needs no framing
#: Seconds a request to the template may take before the template is considered lost.
REPLY_TIMEOUT = 30.0


class TemplateError(OSError):
    """The template could not fork a worker (``errno`` tells why) or is gone."""


class Template:
    """A template process forked from the calling process now (the snapshot).

    Parameters
    ----------
    ctx : multiprocessing context
        The ``fork`` context.
    pool_uid : str
        The pool's id, handed to every worker.
    """

    def __init__(self, ctx: Any, pool_uid: str) -> None:
        self.ctl, child_ctl = socket.socketpair()
        try:
            ev_r, ev_w = os.pipe()
        except OSError:
            close_quietly(self.ctl, child_ctl)
            raise
        self.events = ev_r
        self.lock = threading.Lock()
        self.buffer = b""
        self.closed = False
        try:
            check_fd_headroom()
            self.process = ctx.Process(
                target=_template_main, args=(child_ctl, ev_w, os.getpid(), pool_uid),
                name="batchup-template", daemon=True,
            )
            self.process.start()
        except BaseException:
            close_quietly(ev_r, self.ctl)
            raise
        finally:
            close_quietly(child_ctl, ev_w)
        self.pid = self.process.pid
        self.ctl.settimeout(REPLY_TIMEOUT)

    def fork_worker(self, wid: int, task_fd: int, result_fd: int) -> int:
        """Fork worker ``wid`` reading ``task_fd`` and writing ``result_fd``; return its pid."""
        with self.lock:
            try:
                socket.send_fds(self.ctl, [_MSG.pack(b"fork", wid, 0)], [task_fd, result_fd])
                op, a, b = self._reply()
            except OSError as err:
                raise TemplateError(err.errno or 0, f"the worker template (pid {self.pid}) is gone ({err})") from err
        if op != b"pid ":
            raise TemplateError(b, f"the worker template could not fork a worker ({os.strerror(b)})")
        return a

    def _reply(self) -> tuple:
        data = b""
        while len(data) < _MSG.size:
            chunk = self.ctl.recv(_MSG.size - len(data))
            if not chunk:
                raise ConnectionResetError("the template closed its socket")
            data += chunk
        return _MSG.unpack(data)

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> None:
        """Signal worker ``pid`` if it is still the template's (never a recycled pid)."""
        with self.lock:
            try:
                self.ctl.sendall(_MSG.pack(b"kill", pid, int(sig)))
            except OSError:
                pass

    def read_exits(self) -> list:
        """Return the ``(pid, exit code)`` reports waiting on the event pipe (non-blocking)."""
        out = []
        while select.select([self.events], [], [], 0)[0]:
            try:
                chunk = os.read(self.events, 64 * _MSG.size)
            except OSError:
                break
            if not chunk:
                break
            self.buffer += chunk
            while len(self.buffer) >= _MSG.size:
                _, pid, status = _MSG.unpack(self.buffer[: _MSG.size])
                self.buffer = self.buffer[_MSG.size:]
                out.append((pid, os.waitstatus_to_exitcode(status)))
        return out

    def close(self, timeout: float = 1.0) -> None:
        """Stop the template (it kills any worker still running) and reap it (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.ctl.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ctl.close()
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(1.0)
        close_quietly(self.events)
        try:
            self.process.close()
        except ValueError:
            pass


# -- inside the template --------------------------------------------------------------------------


def check_fd_headroom(pairs: int = 2) -> None:
    """Raise ``OSError`` (EMFILE) unless ``2 * pairs`` more descriptors can be opened now.

    ``multiprocessing`` leaks the pipes it opened when a later one fails, so
    a pool checks for room first and fails cleanly in its own code.
    """
    fds: list = []
    try:
        for _ in range(pairs):
            fds += os.pipe()
    finally:
        close_quietly(*fds)


def _template_main(ctl: socket.socket, events: int, pool_pid: int, pool_uid: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from batchup.parallel import _worker  # imported before any fork, here in the template

    try:
        wake_r, wake_w = os.pipe()
    except OSError as err:
        _refuse_all(ctl, err.errno or 0)
        return
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: set = set()
    first_ppid = os.getppid()
    buffer = b""
    try:
        while True:
            ready: list = select.select([ctl.fileno(), wake_r], [], [], _worker.WATCHDOG_PERIOD)[0]
            if wake_r in ready:
                _drain(wake_r)
            _reap(children, events)
            if os.getppid() != first_ppid:
                return  # the pool's process died; the workers notice by themselves
            if ctl.fileno() not in ready:
                continue
            msg, fds, _, _ = socket.recv_fds(ctl, _MSG.size - len(buffer), 2)
            if not msg:
                return  # the pool closed the socket
            buffer += msg
            if len(buffer) < _MSG.size:
                continue
            op, a, b = _MSG.unpack(buffer)
            buffer = b""
            if op == b"kill":
                if a in children:
                    os.kill(a, b)
                continue
            if len(fds) != 2:  # the descriptors did not fit under this process's limit
                close_quietly(*fds)
                ctl.sendall(_MSG.pack(b"err ", a, errno.EMFILE))
                continue
            try:
                pid = os.fork()
            except OSError as err:
                close_quietly(*fds)
                ctl.sendall(_MSG.pack(b"err ", a, err.errno or 0))
                continue
            if pid == 0:
                close_quietly(wake_r, wake_w, events)
                ctl.close()
                _run_worker(fds, pool_pid, a, pool_uid)
            close_quietly(*fds)
            children.add(pid)
            ctl.sendall(_MSG.pack(b"pid ", pid, 0))
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in list(children):
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass


def _refuse_all(ctl: socket.socket, code: int) -> None:
    """The template could not set itself up: answer every request with error ``code`` until closed."""
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, _MSG.size, 2)
        except OSError:
            return
        close_quietly(*fds)
        if not msg:
            return
        try:
            ctl.sendall(_MSG.pack(b"err ", 0, code))
        except OSError:
            return


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def _reap(children: set, events: int) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:
            children.discard(pid)
            try:
                os.write(events, _MSG.pack(b"exit", pid, status))
            except OSError:
                pass


def _run_worker(fds: list, pool_pid: int, wid: int, pool_uid: str) -> None:
    """In a freshly forked worker: run the worker loop, then leave without unwinding the template."""
    from multiprocessing.connection import Connection

    from batchup.parallel import _worker

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 0
    try:
        tasks = Connection(fds[0], writable=False)
        results = Connection(fds[1], readable=False)
        _worker.process_main(tasks, results, pool_pid, wid, pool_uid)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported on stderr, then the exit code tells the pool
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)
