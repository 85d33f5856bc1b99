"""Errors of the worker pools, and how a worker's exception reaches the caller.

A failure inside a worker is raised again in the consumer as the *same*
exception type with the same arguments, so ``except ValueError`` keeps
working; the worker's formatted traceback is attached as ``__cause__`` (a
:class:`RemoteTraceback`), so the report shows where in the worker it
happened. Failures of the machinery itself (a worker killed by a signal, a
batch that took too long, a pool used after ``close()``) have their own types.
"""
from __future__ import annotations

import errno
import pickle
import signal

__all__ = [
    "BatchTimeoutError",
    "PoolClosedError",
    "RemoteTraceback",
    "StagingSpaceError",
    "WorkerCrashedError",
    "WorkerError",
    "describe_exit",
    "rebuild_exception",
]


class WorkerError(RuntimeError):
    """A worker failed in a way that cannot be reported as the original exception."""


class WorkerCrashedError(WorkerError):
    """A worker process died (killed by a signal or exited) while holding work."""


class BatchTimeoutError(WorkerError, TimeoutError):
    """A task (a batch) was not ready within the stream's ``timeout``."""


class PoolClosedError(RuntimeError):
    """The pool was used after ``close()``."""


class StagingSpaceError(OSError):
    """The shared-memory (or temp) folder had no room for a batch or a shared array.

    An ``OSError`` (``errno`` ENOSPC or EFBIG, ``filename`` the folder) whose
    message gives the folder, the bytes needed and the environment variable
    that relocates staging (``BATCHUP_SHM_DIR``).
    """


#: Environment variable that chooses the folder for shared segments.
SHM_ENV = "BATCHUP_SHM_DIR"


def staging_error(err: OSError, folder: str, nbytes: int, what: str) -> StagingSpaceError:
    """Return the error for ``err`` raised while staging ``nbytes`` bytes of ``what`` in ``folder``."""
    code = err.errno if err.errno is not None else errno.ENOSPC
    text = (
        f"not enough space in {folder!r} to stage {what}: {nbytes} bytes needed "
        f"({err.strerror or err}); set {SHM_ENV} to a folder with more free space "
        "(a larger tmpfs, or a local disk)"
    )
    return StagingSpaceError(code, text, folder)


def fd_limit_error(err: OSError, what: str) -> OSError:
    """Return ``err`` (EMFILE/ENFILE) re-worded with the remedy, or ``err`` itself otherwise."""
    if err.errno not in (errno.EMFILE, errno.ENFILE):
        return err
    try:
        import resource

        limit = f" (the limit is {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        limit = ""
    return OSError(
        err.errno,
        f"too many open files{limit} while {what}; raise the limit with `ulimit -n` "
        "(e.g. `ulimit -n 4096`) or use fewer workers or a smaller buffer",
    )


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker.

    Attached as ``__cause__`` of the re-raised exception; ``str()`` is the
    traceback text, which names the worker and the batch.

    Parameters
    ----------
    text : str
        The traceback as the worker formatted it (also kept as ``.text``).
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text


def describe_exit(exitcode: int | None) -> str:
    """Describe a process exit code for an error message about a worker.

    Parameters
    ----------
    exitcode : int or None
        ``multiprocessing.Process.exitcode``: ``None`` while running, ``-N``
        after signal ``N``, the exit status otherwise.

    Returns
    -------
    str
        A predicate to follow "the worker": ``"is still running"``,
        ``"was killed by signal SIGKILL"`` or ``"exited with code 3"``.

    Examples
    --------
    >>> describe_exit(-9), describe_exit(3)
    ('was killed by signal SIGKILL', 'exited with code 3')
    """
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by signal {name}"
    return f"exited with code {exitcode}"


def crash_hint(exitcode: int | None, start_method: str | None = None) -> str:
    """Return the usual causes of a worker death, for the error message.

    ``start_method`` is given when the worker died before it finished
    starting: under ``spawn``/``forkserver`` that often means an unguarded
    main module.
    """
    if exitcode is not None and exitcode < 0 and -exitcode == getattr(signal, "SIGBUS", -1):
        return (
            "SIGBUS usually means the shared-memory folder is full; set BATCHUP_SHM_DIR to a "
            "folder with more free space"
        )
    if start_method in ("spawn", "forkserver") and exitcode == 1:
        return (
            f"the worker died while starting: under {start_method!r} the main module must be "
            "importable and guarded by if __name__ == '__main__' (see the worker's traceback on stderr); "
            "the pool has replaced the worker"
        )
    return (
        "common causes: the out-of-memory killer, a crash (segfault) in native code, or "
        "a task that called sys.exit()/os._exit(); the pool has replaced the worker"
    )


def rebuild_exception(payload: bytes | None, type_name: str, message: str, tb_text: str) -> BaseException:
    """Return the exception to raise in the caller for a failure reported by a worker.

    ``payload`` is the pickled exception (``None`` when the worker could not
    pickle it). If it unpickles, that exception is returned with
    :class:`RemoteTraceback` as its cause; otherwise a :class:`WorkerError`
    naming the original class and message.

    Parameters
    ----------
    payload : bytes or None
        The pickled exception, or ``None`` if it could not be pickled.
    type_name : str
        The exception's class name, for the fallback message.
    message : str
        ``str()`` of the exception, for the fallback message.
    tb_text : str
        The worker's formatted traceback.

    Returns
    -------
    BaseException
        The original exception (same type and arguments), or a
        :class:`WorkerError`; either way with a :class:`RemoteTraceback` of
        ``tb_text`` as ``__cause__``. The caller raises it.
    """
    cause = RemoteTraceback(tb_text)
    why = "it could not be pickled in the worker"
    if payload is not None:
        try:
            exc = pickle.loads(payload)
        except Exception as err:  # noqa: BLE001 - any failure to rebuild is reported
            why = f"re-creating it in the parent failed: {type(err).__name__}: {err}"
        else:
            if isinstance(exc, BaseException):
                exc.__cause__ = cause
                return exc
            why = f"it unpickled as a {type(exc).__name__}"
    wrapped = WorkerError(f"{type_name}: {message} (raised in a worker; {why})")
    wrapped.__cause__ = cause
    return wrapped


def attach_cause(exc: BaseException, tb_text: str) -> BaseException:
    """Attach ``tb_text`` as the cause of ``exc`` (used by in-process workers)."""
    exc.__cause__ = RemoteTraceback(tb_text)
    return exc


def exception_payload(exc: BaseException) -> bytes | None:
    """Pickle ``exc`` if it survives a round trip, else return ``None``."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
    except Exception:  # noqa: BLE001 - the caller reports a WorkerError instead
        return None
    return data
