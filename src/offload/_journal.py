"""The journal of durable tasks: a SQLite file (stdlib ``sqlite3``, WAL) that outlives the server.

A durable task is a row, written before its endpoint returns and deleted when the task ends
(kept as ``failed`` when it failed after its retries). Each row names its *owner*: the runtime
that runs it. An owner renews its lease while it lives; the rows of an owner whose lease ran
out, or that is a process of this host that no longer exists, are taken over by another
runtime on the same file, in one transaction, so that a row runs in one live process at a
time. This module is storage only: what runs the rows is :mod:`offload._durable`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

from ._exceptions import OffloadError

T = TypeVar("T")

#: The version of the journal's tables; another one is refused, never guessed at.
FORMAT = 1

#: What a running task's row says; ``pending`` ones wait for their list to reach them.
State = str  # "pending", "running" or "failed"

# One row a task, its list's options with it: scheduling a task is one INSERT, in one
# B-tree (WITHOUT ROWID) and small pages, so that a commit writes little.
_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE owners (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started TEXT NOT NULL,
    lease_until REAL NOT NULL
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    list_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    on_error TEXT,
    concurrency TEXT,
    name TEXT NOT NULL,
    key TEXT,
    executor TEXT,
    timeout REAL,
    retries INTEGER,
    payload BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    owner TEXT,
    error TEXT
) WITHOUT ROWID;
CREATE UNIQUE INDEX tasks_live_key ON tasks(key) WHERE key IS NOT NULL AND state != 'failed';
"""

#: SQLite's page: small, since a commit writes each page it changed (a row is a few hundred
#: bytes; a large payload overflows to more pages, as it must).
_PAGE_SIZE = 1024

_INSERT = (
    "INSERT INTO tasks (id, list_id, position, on_error, concurrency, name, key, executor,"
    " timeout, retries, payload, state, created_at, owner)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET list_id = excluded.list_id,"
    " position = excluded.position, on_error = excluded.on_error,"
    " concurrency = excluded.concurrency, name = excluded.name, key = excluded.key,"
    " executor = excluded.executor, timeout = excluded.timeout, retries = excluded.retries,"
    " payload = excluded.payload"
)


class NewTask(NamedTuple):  # a tuple: one is made for each durable task scheduled
    """A task to journal: its pickled call and what its run needs."""

    id: str
    name: str
    payload: bytes
    key: str | None
    executor: str | None  # a registered name; None: the config's
    timeout: float | None
    retries: int | None


@dataclass(frozen=True, slots=True)
class Entry:
    """A journaled task, as the journal's readers (a takeover, ``python -m offload journal``)
    see it. ``error`` is the exception's type and message of a failed task."""

    id: str
    list_id: str
    position: int
    name: str
    key: str | None
    executor: str | None
    timeout: float | None
    retries: int | None
    state: State
    attempts: int
    created_at: float
    owner: str | None
    error: str | None
    on_error: str | None
    concurrency: str | None


@dataclass(frozen=True, slots=True)
class Owner:
    """A runtime that runs journaled tasks: where it lives, and until when its lease holds.

    ``host`` names the process table the ``pid`` is in (the machine, its boot, and the pid
    namespace: a container has its own), and ``started`` when that process started, so that
    a pid used again by another process (the first process of a restarted container) is not
    taken for the owner.
    """

    id: str
    host: str
    pid: int
    started: str
    lease_until: float


class JournalError(OffloadError):
    """The journal cannot be used: missing rights, a corrupt or locked file, another format."""


@functools.cache  # the same for the life of the process
def process_table() -> str:
    """Name the table of processes this one is in: the host, its boot, its pid namespace.

    Two runtimes that give the same name can tell whether each other's process still lives.
    """
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):  # Linux; elsewhere the host name has to do
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)


def process_start(pid: int) -> str | None:
    """When the process ``pid`` started (clock ticks after boot), or ``None`` if it is gone
    (a zombie counts as gone); ``""`` where the system does not say (not Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # another user's process: alive
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[-1].split()
    except OSError:
        return ""
    if fields[0] == b"Z":
        return None
    return fields[19].decode()  # field 22 of stat(5), counted after the name's ")"


class Journal:
    """One process's connection to a journal file. Thread-safe: every call takes a lock, and
    each write is one short transaction.

    :raises JournalError: from :meth:`open`, if the file cannot be used
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        checkpoints: bool = True,
        write_lock: threading.Lock | None = None,
    ) -> None:
        """
        :param checkpoints: whether a commit may copy the WAL into the file when it has grown
            (SQLite's automatic checkpoint, which syncs the file: milliseconds, in the commit);
            without, the owner calls :meth:`checkpoint` where waiting does not matter
        :param write_lock: the lock of this process's write transactions on the file, shared
            by its connections
        """
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        # Shared by the connections of one process: one waits for another's transaction on
        # this lock, woken as it ends, rather than in SQLite's busy handler, which sleeps
        # a millisecond or more at a time.
        self._write_lock = threading.Lock() if write_lock is None else write_lock
        # A checkpoint copies the WAL into the file and syncs it: milliseconds. A connection
        # on the event loop leaves them to one on a thread.
        self._checkpoints = checkpoints
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def open(self, *, create: bool = True) -> None:
        """Open the file, and check that it is a journal of this format; make it one if it is
        new (or empty) and ``create``.

        Nothing is written to a file that is not a journal (an app's own database, say).

        :raises JournalError: naming the file, what is wrong, and what to do
        """
        where = f"journal {str(self.path)!r}"
        if self.path.is_dir():
            raise JournalError(f"{where} is a directory; give the path of a file in it")
        try:
            db = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open {where}: {exc}; check that its directory exists "
                               "and is writable") from exc  # fmt: skip
        try:
            self._prepare(db, where, create)
        except sqlite3.DatabaseError as exc:
            db.close()
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise JournalError(
                    f"{where} stayed locked for {self._busy_timeout:g}s: another process "
                    "holds a long transaction on it (a backup tool, a stuck sqlite3 shell)"
                ) from exc
            if "readonly" in text or "unable to open" in text:
                raise JournalError(
                    f"cannot write {where}: {text}; give the server's user write access to "
                    "the file and its directory (SQLite writes -wal and -shm files beside it)"
                ) from exc
            raise JournalError(
                f"{where} is not a usable SQLite journal ({text}): it may be corrupt or "
                "another kind of file; move it aside (its pending tasks are in it) and start "
                "with a new path"
            ) from exc
        except BaseException:
            db.close()
            raise
        self._db = db

    def _prepare(self, db: sqlite3.Connection, where: str, create: bool) -> None:
        # A read first, which writes nothing and blocks no writer.
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if tables and "meta" not in tables:
            raise JournalError(
                f"{where} is a SQLite database of something else (tables: "
                f"{', '.join(sorted(tables))}); give the journal a file of its own"
            )
        if not tables:
            if not create:
                raise JournalError(f"{where} is not a journal: it holds no tables")
            db.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # before the first table
        db.execute("PRAGMA journal_mode=WAL")
        if not self._checkpoints:
            db.execute("PRAGMA wal_autocheckpoint=0")
        # WAL with synchronous=NORMAL: a commit survives the process's death (SIGKILL, the
        # OOM killer); only a power cut may lose the last commits.
        db.execute("PRAGMA synchronous=NORMAL")
        if not tables:
            db.execute("BEGIN IMMEDIATE")  # one process creates the tables, the others wait
            try:
                if not db.execute("SELECT name FROM sqlite_master").fetchall():
                    for statement in _SCHEMA.split(";"):  # executescript would commit
                        db.execute(statement)
                    db.execute("INSERT INTO meta VALUES ('format', ?)", (str(FORMAT),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        row = db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        found = None if row is None else row[0]
        if found != str(FORMAT):
            raise JournalError(
                f"{where} was written in journal format {found}, and this version of offload "
                f"reads format {FORMAT}: run the tasks it holds with the offload that wrote "
                "it, or move it aside"
            )

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the file, as far as readers allow; writers of this
        and other processes go on meanwhile (a passive checkpoint)."""
        with self._lock:
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close the connection; the file stays."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    def _connection(self) -> sqlite3.Connection:
        db = self._db
        if db is None:
            raise JournalError(f"journal {str(self.path)!r} is not open")
        return db

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one write transaction."""
        with self._lock, self._write_lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

    # Writing tasks -----------------------------------------------------------------------

    def add(
        self,
        list_id: str,
        on_error: str | None,
        concurrency: str | None,
        tasks: Sequence[tuple[int, NewTask]],
        owner: str,
    ) -> dict[str, str]:
        """Journal ``tasks`` (each with its position) of a list, owned by ``owner``; a task
        journaled already is written anew (its options changed).

        :return: for each task whose ``key`` is already pending or running, the id of that
            task; such a task is not journaled (and leaves the journal, if it was)
        """
        now = time.time()
        rows = [
            (task.id, list_id, position, on_error, concurrency, task.name, task.key,
             task.executor, task.timeout, task.retries, task.payload, now, owner)
            for position, task in tasks
        ]  # fmt: skip
        with self._lock, self._write_lock:
            db = self._connection()
            if len(rows) == 1:
                try:  # the common case: one statement, committed on its own
                    db.execute(_INSERT, rows[0])
                    return {}
                except sqlite3.IntegrityError:  # its key is taken: sort it out below
                    pass
            db.execute("BEGIN IMMEDIATE")
            try:
                existing: dict[str, str] = {}
                for row in rows:
                    try:
                        db.execute(_INSERT, row)
                    except sqlite3.IntegrityError:  # a live task has its key
                        task_id, key = row[0], row[6]
                        (other,) = db.execute(
                            "SELECT id FROM tasks WHERE key = ? AND state != 'failed'", (key,)
                        ).fetchone()
                        existing[task_id] = other
                        db.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return existing

    def record_outcomes(
        self, started: dict[str, int], ended: Iterable[str], failed: dict[str, tuple[str, int]]
    ) -> None:
        """In one transaction: the attempts of tasks that started, the tasks that ended (their
        rows go), and those that failed after their retries (kept, with the error's type and
        their attempts)."""

        def record(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE tasks SET state = 'running', attempts = ? WHERE id = ?",
                [(attempts, task_id) for task_id, attempts in started.items()],
            )
            _delete(db, ended)
            db.executemany(
                "UPDATE tasks SET state = 'failed', error = ?, attempts = ?, owner = NULL"
                " WHERE id = ?",
                [(error, attempts, task_id) for task_id, (error, attempts) in failed.items()],
            )

        self._write(record)

    # Owners and takeovers ------------------------------------------------------------------

    def register(self, owner: str, lease: float) -> None:
        """Make ``owner`` (this process) an owner whose lease holds for ``lease`` seconds."""
        pid = os.getpid()
        row = (owner, process_table(), pid, process_start(pid) or "", time.time() + lease)
        self._write(
            lambda db: db.execute("INSERT OR REPLACE INTO owners VALUES (?, ?, ?, ?, ?)", row)
        )

    def renew(self, owner: str, lease: float) -> bool:
        """Extend ``owner``'s lease by ``lease`` seconds from now.

        :return: ``False`` if another runtime had taken ``owner`` for gone (its lease ran
            out: the process was stalled, or the clock jumped) and taken over its tasks; it
            is then registered again, and the tasks it still runs may run twice
        """

        def renew(db: sqlite3.Connection) -> int:
            until = time.time() + lease
            return db.execute(
                "UPDATE owners SET lease_until = ? WHERE id = ?", (until, owner)
            ).rowcount

        if self._write(renew):
            return True
        self.register(owner, lease)
        return False

    def release(self, owner: str) -> None:
        """``owner`` closes: its unfinished tasks may be taken over at once."""

        def release(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM owners WHERE id = ?", (owner,))
            db.execute(
                "UPDATE tasks SET owner = NULL, state = 'pending'"
                " WHERE owner = ? AND state != 'failed'",
                (owner,),
            )

        self._write(release)

    def take_over(self, owner: str) -> list[tuple[Entry, bytes]]:
        """Make ``owner`` the owner of every unfinished task whose owner is gone: released,
        its lease run out, or a process of this host that no longer exists.

        :return: the tasks taken, with their pickled calls, by list and position
        """
        table = process_table()
        with self._lock:  # a read first, which blocks no writer: most sweeps find nothing
            db = self._connection()
            owners = {row[0]: Owner(*row) for row in db.execute("SELECT * FROM owners")}
            others = db.execute(
                "SELECT DISTINCT owner FROM tasks WHERE state != 'failed'"
                " AND (owner IS NULL OR owner != ?)",
                (owner,),
            ).fetchall()
        now = time.time()
        candidates = [
            other
            for (other,) in others
            if _is_gone(owners.get(other) if other else None, now, table)
        ]
        if not candidates:
            return []

        def take(db: sqlite3.Connection) -> list[tuple[Entry, bytes]]:
            # Again, in the transaction: another process may have taken them meanwhile.
            now = time.time()
            owners = {row[0]: Owner(*row) for row in db.execute("SELECT * FROM owners")}
            gone = [
                other
                for other in candidates
                if _is_gone(owners.get(other) if other else None, now, table)
            ]
            taken: list[tuple[Entry, bytes]] = []
            for other in gone:
                rows = db.execute(
                    f"SELECT {_ENTRY_COLUMNS}, payload FROM tasks"
                    " WHERE owner IS ? AND state != 'failed'",
                    (other,),
                ).fetchall()
                taken += [(Entry(*row[:-1]), row[-1]) for row in rows]
                db.execute(
                    "UPDATE tasks SET owner = ? WHERE owner IS ? AND state != 'failed'",
                    (owner, other),
                )
                if other is not None:
                    db.execute("DELETE FROM owners WHERE id = ?", (other,))
            # By list, each in its order.
            taken.sort(key=lambda item: (item[0].list_id, item[0].position))
            return taken

        return self._write(take)

    # Reading and acting on one entry (python -m offload journal) ---------------------------

    def entries(self) -> list[Entry]:
        """Every journaled task, oldest first."""
        with self._lock:
            query = f"SELECT {_ENTRY_COLUMNS} FROM tasks ORDER BY created_at, position"
            rows = self._connection().execute(query).fetchall()
        return [Entry(*row) for row in rows]

    def owners(self) -> list[Owner]:
        """The runtimes that hold leases."""
        with self._lock:
            rows = self._connection().execute("SELECT * FROM owners").fetchall()
        return [Owner(*row) for row in rows]

    def retry(self, task_id: str) -> bool:
        """Make a failed task pending again, for the next runtime that looks to take it.

        :return: whether a failed task with that id was there
        """

        def retry(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE tasks SET state = 'pending', owner = NULL, error = NULL, attempts = 0"
                " WHERE id = ? AND state = 'failed'",
                (task_id,),
            )
            return cursor.rowcount == 1

        return self._write(retry)

    def purge(self, task_id: str) -> bool:
        """Remove a task, whatever its state.

        :return: whether a task with that id was there
        """

        def purge(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM tasks WHERE id = ?", (task_id,)).rowcount == 1

        return self._write(purge)


_ENTRY_COLUMNS = (
    "id, list_id, position, name, key, executor, timeout, retries, state, attempts,"
    " created_at, owner, error, on_error, concurrency"
)


def _is_gone(owner: Owner | None, now: float, table: str) -> bool:
    """Whether ``owner``'s tasks may be taken over: it released them, or its process is gone.

    A process in this process table is looked at, whatever its lease says: a live one
    (stalled, perhaps) keeps its tasks, a dead one is gone at once. One elsewhere is gone
    once its lease has run out.
    """
    if owner is None:  # released, or its row already cleared
        return True
    if owner.host == table:
        started = process_start(owner.pid)
        return started is None or (started != owner.started and owner.started != "")
    return owner.lease_until < now


def _delete(db: sqlite3.Connection, task_ids: Iterable[str]) -> None:
    db.executemany("DELETE FROM tasks WHERE id = ?", [(task_id,) for task_id in task_ids])
