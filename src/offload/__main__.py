"""``python -m offload journal PATH``: what a journal of durable tasks holds, and acting on it.

::

    python -m offload journal tasks.journal              # pending and failed tasks
    python -m offload journal tasks.journal --retry ID   # run a failed task again
    python -m offload journal tasks.journal --purge ID   # forget a task

The list never shows a task's arguments (they may hold secrets): its id, name, key, state,
attempts, age and, for a failed one, the type of its error.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ._journal import Entry, Journal, JournalError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code."""
    parser = argparse.ArgumentParser(prog="python -m offload", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    journal = commands.add_parser("journal", help="list or act on a journal of durable tasks")
    journal.add_argument("path", help="the journal file (OffloadConfig.journal)")
    action = journal.add_mutually_exclusive_group()
    action.add_argument("--retry", metavar="ID", help="make a failed task pending again")
    action.add_argument("--purge", metavar="ID", help="remove a task from the journal")
    arguments = parser.parse_args(argv)
    try:
        return _journal(arguments.path, arguments.retry, arguments.purge)
    except JournalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


#: What ``--retry`` and ``--purge`` do: the journal's method, what is said when no task
#: fits, and what is said once done.
_ACTIONS: dict[str, tuple[Callable[[Journal, str], bool], str, str]] = {
    "retry": (
        Journal.retry,
        "no failed task {id} in {path}",
        "task {id} is pending again: the next runtime on the journal runs it",
    ),
    "purge": (Journal.purge, "no task {id} in {path}", "task {id} removed"),
}


def _journal(path: str, retry: str | None, purge: str | None) -> int:
    if not Path(path).is_file():  # never create a journal only to look at it
        raise JournalError(f"journal {path!r} does not exist")
    journal = Journal(path)
    journal.open(create=False)
    try:
        for action, task_id in (("retry", retry), ("purge", purge)):
            if task_id is not None:
                act, missing, done = _ACTIONS[action]
                try:
                    acted = act(journal, task_id)
                except sqlite3.IntegrityError:  # --retry: a live task holds its key now
                    print(
                        f"task {task_id} cannot be pending again: a pending or running task "
                        "has its key; purge one of them first",
                        file=sys.stderr,
                    )
                    return 1
                if not acted:
                    print(missing.format(id=task_id, path=path), file=sys.stderr)
                    return 1
                print(done.format(id=task_id, path=path))
                return 0
        print(_table(journal.entries(), time.time()))
        return 0
    finally:
        journal.close()


def _table(entries: list[Entry], now: float) -> str:
    if not entries:
        return "no pending or failed tasks"
    header = ("id", "name", "key", "state", "attempts", "age", "error")
    rows = [
        (entry.id, entry.name, entry.key or "-", entry.state, str(entry.attempts),
         _age(now - entry.created_at), entry.error or "-")
        for entry in entries
    ]  # fmt: skip
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]  # fmt: skip
    states = [entry.state for entry in entries]
    summary = ", ".join(
        f"{states.count(s)} {s}" for s in ("pending", "running", "failed") if s in states
    )
    return "\n".join([*lines, "", summary])


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


if __name__ == "__main__":
    sys.exit(main())
