"""Forwarding a worker's log records to the parent's loggers, one pipe per worker.

A pipe per worker, rather than one queue shared by all, means a worker killed in the
middle of sending a record can corrupt only its own pipe, never another worker's logging.
"""

from __future__ import annotations

import logging
import pickle
import threading
from multiprocessing.connection import Connection
from typing import Any

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


def start_forwarding(connection: Connection, name: str) -> threading.Thread:
    """Hand every record arriving on ``connection`` to this process's loggers, until EOF."""
    thread = threading.Thread(target=_forward, args=(connection,), name=name, daemon=True)
    thread.start()
    return thread


def _forward(connection: Connection) -> None:
    with connection:
        while True:
            try:
                data = connection.recv_bytes()
            except (EOFError, OSError):  # the worker has exited (or was killed mid-record)
                return
            try:
                record = logging.makeLogRecord(pickle.loads(data))
            except Exception:
                continue
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
