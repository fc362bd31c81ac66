"""The lifeline: how a worker process learns that the server that started it is gone.

The server holds the write end of one pipe for as long as it lives and never writes to it;
each worker holds the read end. When the server ends, whatever ends it (a clean exit,
SIGTERM re-raised by uvicorn after its shutdown, SIGKILL from the out-of-memory killer,
``os._exit``), the kernel closes the write end, the read end sees EOF, and the worker stops
itself and every process it started. Nothing has to run in the dying server, and unlike a
check of the server's pid, a zombie server that nobody has reaped yet counts as gone.

A worker started by the fork server is the fork server's child, not the server's, and the
fork server lives as long as any worker does, so the worker's parent cannot tell it either.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from multiprocessing.connection import Connection, Pipe

_lock = threading.Lock()
_ends: tuple[Connection, Connection] | None = None


def lifeline() -> Connection:
    """Return the read end of this process's lifeline, to send to a new worker.

    The pipe is made on first use and its write end stays open, unused, until this process
    ends.
    """
    global _ends
    with _lock:
        if _ends is None:
            _ends = Pipe(duplex=False)
        return _ends[0]


def _forget_in_child() -> None:
    # A forked child (a "fork" worker, a gunicorn worker forked after the app started one)
    # must not hold its parent's write end: the parent's workers would then outlive it. The
    # read end stays: a "fork" worker watches it (a reader keeps no one alive); a child that
    # starts workers of its own makes a lifeline of its own.
    global _ends
    if _ends is not None:
        _ends[1].close()
        _ends = None


os.register_at_fork(after_in_child=_forget_in_child)


def watch(lifeline: Connection, leftovers: str | None) -> None:
    """In a worker: once the server has gone, remove ``leftovers`` and stop this worker's
    process group, the worker and every process its tasks started, at once.

    :param lifeline: the read end of the server's lifeline
    :param leftovers: a directory the server would have removed at a clean exit (the
        multiprocessing temporary directory that holds the fork server's socket), or ``None``
    """
    threading.Thread(
        target=_wait_then_stop, args=(lifeline, leftovers), name="offload-lifeline", daemon=True
    ).start()


def _wait_then_stop(lifeline: Connection, leftovers: str | None) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()  # nothing is ever sent: this returns only at EOF
    if leftovers is not None:
        shutil.rmtree(leftovers, ignore_errors=True)
    if os.getpgid(0) == os.getpid():  # the group is the worker's own, not the server's
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
