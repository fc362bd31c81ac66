"""Looking at processes from the tests' side."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid is still alive (or a zombie not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def session_processes(session: int) -> dict[int, str]:
    """Return the live processes (not zombies) of a session, by pid, with their command lines.

    A server started with ``start_new_session=True`` leads a session that every process it
    starts stays in, even once reparented to PID 1: the way to find what it left behind.
    """
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        # After the ")" that ends the command name: state, ppid, pgrp, session.
        if int(fields[3]) == session and fields[0] != b"Z":
            found[int(entry)] = command.strip()
    return found


def kill_session(session: int) -> None:
    """SIGKILL every live process of a session."""
    for pid in session_processes(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for_no_session_processes(session: int, timeout: float) -> dict[int, str]:
    """Wait up to ``timeout`` seconds for a session to have no live process; return those left."""
    deadline = time.monotonic() + timeout
    while (left := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
