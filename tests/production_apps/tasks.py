"""Task functions that the production apps and scripts run, in threads or worker processes."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from pathlib import Path


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees it half-written."""
    partial = Path(f"{path}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def mark(path: str, seconds: float = 0.0) -> None:
    """Write this process's pid to ``path``, then sleep ``seconds``."""
    write_atomically(path, str(os.getpid()))
    time.sleep(seconds)


def popen_grandchild_then_hang(pid_file: str) -> None:
    """Start ``sleep 100`` (a grandchild of the server), write its pid, then hang."""
    child = subprocess.Popen(["sleep", "100"])
    write_atomically(pid_file, str(child.pid))
    time.sleep(100)


def multiprocessing_grandchild_then_hang(pid_file: str) -> None:
    """Start a ``multiprocessing`` child, write its pid, then hang.

    Forked, as ``multiprocessing`` does by default on Linux: the child inherits every file
    descriptor of the worker, its pipes to the server included.
    """
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(100,))
    child.start()
    write_atomically(pid_file, str(child.pid))
    time.sleep(100)
