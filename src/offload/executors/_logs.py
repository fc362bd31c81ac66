"""Forwarding a worker's log records (and its task's progress) to the parent, one pipe per
worker.

A pipe per worker, rather than one queue shared by all, means a worker killed in the
middle of sending a record can corrupt only its own pipe, never another worker's logging.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from typing import Any

from .._progress import Progress, deliver

_PLAIN = (str, int, float, bool, type(None))


class PipeHandler(logging.Handler):
    """Send each record, already formatted, through ``connection`` to the parent."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.connection.send_bytes(pickle.dumps(_portable(record)))
        except Exception:
            self.handleError(record)

    def send_progress(self, task_id: str, progress: Progress) -> None:
        """Send a task's progress through the same pipe, in the handler's lock (the task's
        threads may log at the same time)."""
        message = (task_id, progress.done, progress.total, progress.message)
        with self.lock:  # type: ignore[union-attr]  # made by logging.Handler.__init__
            self.connection.send_bytes(pickle.dumps(message))


def _portable(record: logging.LogRecord) -> dict[str, Any]:
    # As QueueHandler.prepare does: resolve what may not pickle (args, exc_info) into text.
    state = dict(record.__dict__)
    state["msg"] = record.getMessage()
    state["args"] = None
    if record.exc_info and not record.exc_text:
        state["exc_text"] = logging.Formatter().formatException(record.exc_info)
    state["exc_info"] = None
    try:
        pickle.dumps(state)
    except Exception:  # an ``extra`` value that does not pickle
        state = {k: v if isinstance(v, _PLAIN) else repr(v) for k, v in state.items()}
    return state


def forwarded_level() -> int:
    """Return the lowest level any of this process's loggers lets through.

    Workers drop records below it; the parent then applies each logger's own level.
    """
    levels = [logging.getLogger().getEffectiveLevel()]
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.level:
            levels.append(logger.level)
    return min(levels)


class LogForwarder:
    """Hand every record arriving on ``connection`` to this process's loggers, in a thread.

    The thread ends at EOF, or when :meth:`close` asks it to: a grandchild of the worker
    (a ``multiprocessing`` child started with ``fork``) may hold a copy of the pipe, and
    then EOF never comes, so waiting for it would hang the worker's retirement.

    :param connection: the read end of a worker's log pipe
    :param name: the thread's name
    """

    def __init__(self, connection: Connection, name: str) -> None:
        self._wake_reader, self._wake_writer = Pipe(duplex=False)
        self._thread = threading.Thread(
            target=_forward, args=(connection, self._wake_reader), name=name, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Forward the records already sent, stop the thread and wait until it has ended."""
        with contextlib.suppress(OSError):  # the thread ended at EOF and closed its end
            self._wake_writer.send_bytes(b"")
        self._thread.join()
        self._wake_writer.close()


def _forward(connection: Connection, wake: Connection) -> None:
    with connection, wake:
        while True:
            if connection not in wait([connection, wake]):
                # Asked to stop: the worker has exited, so whatever it sent is here already.
                while connection.poll(0) and _forward_one(connection):
                    pass
                return
            if not _forward_one(connection):
                return


def _forward_one(connection: Connection) -> bool:
    """Pass one record on; return ``False`` at EOF (the worker exited, or was killed)."""
    try:
        data = connection.recv_bytes()
    except (EOFError, OSError):
        return False
    try:
        message = pickle.loads(data)
        if isinstance(message, tuple):  # a task's progress: (task_id, done, total, message)
            task_id, done, total, text = message
            deliver(task_id, Progress(done, total, text))
            return True
        record = logging.makeLogRecord(message)
    except Exception:  # a record cut short by a kill mid-send
        return True
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
    return True
