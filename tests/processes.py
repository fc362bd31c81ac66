"""Looking at processes from the tests' side."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid is still alive (or a zombie not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
