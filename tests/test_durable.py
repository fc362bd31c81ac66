"""Durable task lists, with a real SQLite journal: written before the endpoint returns, run
at least once, taken over from runtimes that are gone, and shown by ``python -m offload``."""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

import offload
import process_tasks
from offload import (
    BackgroundTask,
    BackgroundTasks,
    ConfigError,
    NotPicklable,
    OffloadConfig,
    OffloadError,
    Runtime,
)
from offload._journal import FORMAT, Journal, JournalError
from offload.starlette import JSONResponse

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).parent


def entries(path: Path) -> list[offload._journal.Entry]:
    """What the journal holds, read through a connection of its own."""
    journal = Journal(path)
    journal.open()
    try:
        return journal.entries()
    finally:
        journal.close()


def durable(path: Path, **fields: object) -> OffloadConfig:
    return OffloadConfig(journal=str(path), durable=True, **fields)  # type: ignore[arg-type]


async def wait_for(condition: Callable[[], object], seconds: float = 10) -> None:
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 (another loop or thread ends it)
            await anyio.sleep(0.01)


def append(path: str, text: str) -> None:
    with open(path, "a") as file:
        file.write(text + "\n")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def journal_of_another(
    path: Path,
    owner: tuple[str, str, int, str, float] | str,
    out: Path,
    executor: str | None = None,
) -> None:
    """Journal a task that appends "taken" to ``out``, as another runtime would have: its
    ``owner``, an id alone (no owner row) or a row of the ``owners`` table."""
    from offload._journal import NewTask
    from offload.executors._pickling import pickle_call

    owner_id = owner if isinstance(owner, str) else owner[0]
    call = BackgroundTask(append, str(out), "taken")
    journal = Journal(path)
    journal.open()
    try:
        task = NewTask(call.id, "another's", pickle_call(call), None, executor, None, None)
        journal.add("list-1", None, None, [(0, task)], owner=owner_id)
    finally:
        journal.close()
    if not isinstance(owner, str):
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO owners VALUES (?, ?, ?, ?, ?)", owner)


fails_times: dict[str, int] = {}


def fail_with_secret(password: str) -> None:
    raise ValueError(f"wrong password {password}")


# --- writing and running ------------------------------------------------------------------------


async def test_a_durable_list_is_journaled_when_made_and_forgotten_when_done(
    tmp_path: Path,
) -> None:
    journal, out = tmp_path / "j.db", tmp_path / "out"
    async with Runtime(durable(journal)):
        tasks = BackgroundTasks()
        first = tasks.add_task(append, str(out), "one").set(key="order-1")
        tasks.add_task(append, str(out), "two")
        assert tasks.durable
        assert tasks.detach
        # In the journal before the list is even awaited: what an endpoint's return needs.
        written = entries(journal)
        assert [(e.name, e.key, e.state, e.position) for e in written] == [
            ("append", "order-1", "pending", 0),
            ("append", None, "pending", 1),
        ]
        assert written[0].id == first.id
        await tasks()
        await wait_for(lambda: lines(out) == ["one", "two"])
        status = offload.status(first.id)
        assert status is not None
        assert status.state == "succeeded"
        await wait_for(lambda: entries(journal) == [])


def test_an_endpoint_s_durable_tasks_are_journaled_before_it_returns(tmp_path: Path) -> None:
    journal, out = tmp_path / "j.db", tmp_path / "out"
    seen: list[list[str]] = []

    async def endpoint(request: object) -> JSONResponse:
        response = JSONResponse(
            {}, backgrounds=[BackgroundTask(append, str(out), "x")], durable=True
        )
        seen.append([entry.name for entry in entries(journal)])
        return response

    app = Starlette(routes=[Route("/", endpoint)], lifespan=offload.lifespan(OffloadConfig(
        journal=str(journal))))  # fmt: skip
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
        deadline = time.monotonic() + 10
        while lines(out) != ["x"] and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen == [["append"]]
    assert lines(out) == ["x"]


async def test_a_failed_task_stays_journaled_with_its_error_type_only(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    async with Runtime(durable(journal, retries=1, retry_backoff=0.0)):
        tasks = BackgroundTasks()
        task = tasks.add_task(fail_with_secret, "hunter2")
        await tasks()
        await wait_for(lambda: [e.state for e in entries(journal)] == ["failed"])
        (entry,) = entries(journal)
        assert (entry.id, entry.attempts, entry.error) == (task.id, 2, "ValueError")
    with sqlite3.connect(journal) as db:  # nothing of the message, which held the argument
        texts = db.execute("SELECT name, key, state, error FROM tasks").fetchall()
    assert not any("hunter2" in str(row) for row in texts)


async def test_a_task_whose_key_is_pending_is_not_added_again(tmp_path: Path) -> None:
    journal, go_on, out = tmp_path / "j.db", tmp_path / "go", tmp_path / "out"
    async with Runtime(durable(journal)):
        first = BackgroundTasks()
        task = first.add_task(wait_then_append, str(go_on), str(out)).set(key="receipt-7")
        await first()
        second = BackgroundTasks()
        again = second.add_task(wait_then_append, str(go_on), str(out)).set(key="receipt-7")
        assert second.tasks == []
        assert again.id == task.id
        third = BackgroundTasks()  # by add_task's key, before it joins: the same
        third.add_task(wait_then_append, str(go_on), str(out))
        assert len(third.tasks) == 1
        go_on.touch()
        await third()
        await wait_for(lambda: len(lines(out)) == 2)
        await wait_for(lambda: entries(journal) == [])
        # Once done, the key may be used again.
        fourth = BackgroundTasks()
        fourth.add_task(append, str(out), "later").set(key="receipt-7")
        assert len(fourth.tasks) == 1
        await fourth()
        await wait_for(lambda: len(lines(out)) == 3)


def wait_then_append(go_on: str, out: str) -> None:
    deadline = time.monotonic() + 10
    while not os.path.exists(go_on) and time.monotonic() < deadline:
        time.sleep(0.01)
    append(out, "done")


async def test_a_list_dropped_unrun_is_forgotten_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "j.db"
    async with Runtime(durable(journal)):
        tasks = BackgroundTasks()
        tasks.add_task(append, str(tmp_path / "never"), "x").set(name="refund")
        assert len(entries(journal)) == 1
        del tasks  # the endpoint raised: its list is dropped
        await wait_for(lambda: entries(journal) == [])
    assert "Durable background tasks not run" in caplog.text
    assert "refund" in caplog.text
    assert not (tmp_path / "never").exists()


# --- bad input, early ---------------------------------------------------------------------------


async def test_what_cannot_be_journaled_is_refused_where_it_is_added(tmp_path: Path) -> None:
    async with Runtime(durable(tmp_path / "j.db")):
        tasks = BackgroundTasks()
        with pytest.raises(NotPicklable, match="lambda") as lambda_error:
            tasks.add_task(lambda: None)
        assert "importable by module and name" in "".join(lambda_error.value.__notes__)
        with pytest.raises(NotPicklable, match="lock") as argument_error:
            tasks.add_task(process_tasks.add, threading.Lock(), 2)  # type: ignore[arg-type]
        assert "<unlocked" not in str(argument_error.value)  # its type, not its value
        assert tasks.tasks == []
        assert entries(tmp_path / "j.db") == []


async def test_a_durable_list_needs_a_journal(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="journal"):
        OffloadConfig(durable=True)
    async with Runtime():
        with pytest.raises(OffloadError, match=r"journal="):
            BackgroundTasks(durable=True)
    with pytest.raises(OffloadError, match="running offload Runtime|journal"):
        BackgroundTasks(durable=True)  # no runtime entered
    async with Runtime(durable(tmp_path / "j.db")):
        with pytest.raises(OffloadError, match="detach=False"):
            BackgroundTasks(durable=True, detach=False)
        with pytest.raises(TypeError, match="key"):
            BackgroundTask(append, "a", "b").set(key="")


async def test_an_unusable_journal_is_a_clear_error_at_startup(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="not a usable SQLite journal"):
        async with Runtime(OffloadConfig(journal=str(corrupt))):
            pass
    with pytest.raises(JournalError, match="is a directory"):
        async with Runtime(OffloadConfig(journal=str(tmp_path))):
            pass
    with pytest.raises(JournalError, match="cannot open"):
        async with Runtime(OffloadConfig(journal=str(tmp_path / "missing" / "j.db"))):
            pass
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(JournalError, match="something else"):
        async with Runtime(OffloadConfig(journal=str(other))):
            pass
    newer = tmp_path / "newer.db"
    async with Runtime(OffloadConfig(journal=str(newer))):
        pass
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE meta SET value = ? WHERE name = 'format'", (str(FORMAT + 1),))
    with pytest.raises(JournalError, match=f"format {FORMAT + 1}.*reads format {FORMAT}"):
        async with Runtime(OffloadConfig(journal=str(newer))):
            pass


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
async def test_an_unwritable_journal_is_a_clear_error_at_startup(tmp_path: Path) -> None:
    locked_dir = tmp_path / "ro"
    locked_dir.mkdir()
    locked_dir.chmod(0o500)
    try:
        with pytest.raises(JournalError, match="write access|cannot open"):
            async with Runtime(OffloadConfig(journal=str(locked_dir / "j.db"))):
                pass
    finally:
        locked_dir.chmod(0o700)


def test_a_journal_locked_by_another_process_says_so(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(JournalError, match="stayed locked"):
            Journal(path, busy_timeout=0.2).open()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# --- takeovers ----------------------------------------------------------------------------------

KILLED_SERVER = """
import os, signal, sys
import anyio, offload
sys.path.insert(0, {tests!r})
from test_durable import append, wait_then_append

async def main():
    async with offload.Runtime(offload.OffloadConfig(journal={journal!r}, durable=True)):
        tasks = offload.BackgroundTasks(on_error="continue")
        tasks.add_task(wait_then_append, {never!r}, {out!r}).set(name="first")
        tasks.add_task(append, {out!r}, "second").set(name="second", retries=2)
        tasks.add_task(append, {out!r}, "third").set(name="third", executor="process")
        print(*(task.id for task in tasks.tasks), flush=True)
        await tasks()
        await anyio.sleep(0.3)  # the first task is running
        os.kill(os.getpid(), signal.SIGKILL)

anyio.run(main)
"""


def run_killed_server(tmp_path: Path, journal: Path, out: Path) -> list[str]:
    """Journal a list of three in a process that is SIGKILLed while the first task runs;
    return the tasks' ids."""
    script = KILLED_SERVER.format(
        tests=str(TESTS), journal=str(journal), never=str(tmp_path / "never"), out=str(out)
    )
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == -9, result.stderr
    return result.stdout.split()


async def test_a_dead_process_s_tasks_are_taken_over_at_start_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Needs the process executor.
    journal, out = tmp_path / "j.db", tmp_path / "out"
    ids = run_killed_server(tmp_path, journal, out)
    left = entries(journal)
    assert [(e.name, e.state) for e in left] == [
        ("first", "running"),
        ("second", "pending"),
        ("third", "pending"),
    ]
    assert [e.id for e in left] == ids
    caplog.set_level(logging.INFO, "offload")
    (tmp_path / "never").touch()  # the first task, run again, now ends
    async with Runtime(OffloadConfig(journal=str(journal), process_workers=1)):
        await wait_for(lambda: lines(out) == ["done", "second", "third"], 30)
        # Under the same ids, with their original options.
        statuses = [offload.status(task_id) for task_id in ids]
        assert [s.name if s else None for s in statuses] == ["first", "second", "third"]
        third = statuses[2]
        assert third is not None
        assert third.executor == "process"
        await wait_for(lambda: entries(journal) == [])
    assert "Took over 3 durable background task(s)" in caplog.text


async def test_a_live_owner_s_tasks_are_not_taken_but_an_expired_lease_s_are(
    tmp_path: Path,
) -> None:
    journal, out = tmp_path / "j.db", tmp_path / "out"
    # A runtime of another host, its lease valid.
    journal_of_another(journal, ("other", "elsewhere", 1, "", time.time() + 60), out)
    assert socket.gethostname() != "elsewhere"
    async with Runtime(OffloadConfig(journal=str(journal))):
        await anyio.sleep(0.2)
        assert lines(out) == []  # its owner holds the lease
    with sqlite3.connect(journal) as db:  # its lease runs out
        db.execute("UPDATE owners SET lease_until = 0 WHERE id = 'other'")
    async with Runtime(OffloadConfig(journal=str(journal))):
        await wait_for(lambda: lines(out) == ["taken"])


async def test_tasks_a_closing_runtime_cut_short_run_in_the_next_one(tmp_path: Path) -> None:
    journal, go_on, out = tmp_path / "j.db", tmp_path / "go", tmp_path / "out"
    async with Runtime(durable(journal, shutdown_timeout=0.2)):
        tasks = BackgroundTasks()
        tasks.add_task(wait_then_append, str(go_on), str(out)).set(name="slow", timeout=5)
        await tasks()
        await anyio.sleep(0.1)
    # Cancelled by the drain (a thread task runs on; its end is not counted): still journaled.
    assert [e.name for e in entries(journal)] == ["slow"]
    go_on.touch()
    async with Runtime(OffloadConfig(journal=str(journal))):
        await wait_for(lambda: entries(journal) == [])
    assert "done" in lines(out)


# --- python -m offload journal ------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload", "journal", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_the_command_line_lists_retries_and_purges(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    async with Runtime(durable(journal, shutdown_timeout=0.1)):
        tasks = BackgroundTasks(on_error="continue")
        failed = tasks.add_task(fail_with_secret, "hunter2").set(key="login-1")
        kept = tasks.add_task(wait_then_append, str(tmp_path / "never"), str(tmp_path / "x"))
        await tasks()
        await wait_for(lambda: "failed" in [e.state for e in entries(journal)])
        listing = cli(str(journal))
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["id", "name", "key", "state", "attempts", "age", "error"]
    assert any(failed.id in row and "login-1" in row and "ValueError" in row for row in rows)
    assert any(kept.id in row for row in rows)
    assert "hunter2" not in listing.stdout
    retried = cli(str(journal), "--retry", failed.id)
    assert retried.returncode == 0, retried.stderr
    assert [e.state for e in entries(journal) if e.id == failed.id] == ["pending"]
    assert cli(str(journal), "--retry", failed.id).returncode == 1  # no longer failed
    assert cli(str(journal), "--purge", kept.id).returncode == 0
    assert kept.id not in [e.id for e in entries(journal)]
    assert cli(str(journal), "--purge", kept.id).returncode == 1
    missing = cli(str(tmp_path / "nothing.db"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert not (tmp_path / "nothing.db").exists()


async def test_a_task_changed_after_its_list_ran_is_not_journaled_again(tmp_path: Path) -> None:
    journal, out = tmp_path / "j.db", tmp_path / "out"
    async with Runtime(durable(journal)):
        tasks = BackgroundTasks()
        task = tasks.add_task(append, str(out), "once")
        await tasks()
        await wait_for(lambda: entries(journal) == [])
        task.set(retries=3)
        assert entries(journal) == []


async def test_a_task_taken_over_onto_an_unknown_executor_is_kept_as_failed(
    tmp_path: Path,
) -> None:
    journal, out = tmp_path / "j.db", tmp_path / "out"
    journal_of_another(journal, "gone", out, executor="gpu")  # no owner row: gone
    async with Runtime(OffloadConfig(journal=str(journal))):
        await wait_for(lambda: [e.state for e in entries(journal)] == ["failed"])
    (entry,) = entries(journal)
    assert entry.error == "ExecutorNotFound"
    assert not out.exists()


# --- what a review found ------------------------------------------------------------------------

STALLED_SERVER = """
import os, signal, sys
import anyio, offload
sys.path.insert(0, {tests!r})
from test_durable import append

async def main():
    async with offload.Runtime(offload.OffloadConfig(journal={journal!r}, durable=True)):
        tasks = offload.BackgroundTasks()
        tasks.add_task(append, {out!r}, "ran").set(name="held")
        print("journaled", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)  # stalled before the list runs: its lease runs out

anyio.run(main)
"""


async def test_a_stalled_process_keeps_its_tasks_and_a_dead_one_gives_them_up(
    tmp_path: Path,
) -> None:
    journal, out = tmp_path / "j.db", tmp_path / "out"
    code = STALLED_SERVER.format(tests=str(TESTS), journal=str(journal), out=str(out))
    # A process to stop and kill, not to await.
    stalled = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert stalled.stdout is not None
        assert stalled.stdout.readline() == "journaled\n"
        with sqlite3.connect(journal) as db:  # its lease ran out long ago
            db.execute("UPDATE owners SET lease_until = 0")
        async with Runtime(OffloadConfig(journal=str(journal))):
            await anyio.sleep(0.3)
            assert lines(out) == []  # alive, on this host: its tasks stay its own
        stalled.kill()
        stalled.wait(10)
        async with Runtime(OffloadConfig(journal=str(journal))):
            await wait_for(lambda: lines(out) == ["ran"])
    finally:
        stalled.kill()
        stalled.wait(10)
        if stalled.stdout is not None:
            stalled.stdout.close()


async def test_a_pid_used_again_by_another_process_is_not_the_owner(tmp_path: Path) -> None:
    # A restarted container's first process has the pid of the last one's.
    from offload._journal import process_table

    journal, out = tmp_path / "j.db", tmp_path / "out"
    # This process's pid, but a process that started at another time.
    earlier = ("earlier", process_table(), os.getpid(), "1", time.time() + 60)
    journal_of_another(journal, earlier, out)
    async with Runtime(OffloadConfig(journal=str(journal))):
        await wait_for(lambda: lines(out) == ["taken"])


async def test_a_lost_lease_is_taken_again(tmp_path: Path) -> None:
    journal_path = tmp_path / "j.db"
    journal = Journal(journal_path)
    journal.open()
    try:
        journal.register("me", 10)
        with sqlite3.connect(journal_path) as db:  # another runtime took me for gone
            db.execute("DELETE FROM owners")
        assert journal.renew("me", 10) is False
        assert [owner.id for owner in journal.owners()] == ["me"]
        assert journal.renew("me", 10) is True
    finally:
        journal.close()


async def test_outcomes_wait_out_a_locked_journal_and_are_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offload._durable, "BUSY", 0.2)
    journal, go_on, out = tmp_path / "j.db", tmp_path / "go", tmp_path / "out"
    async with Runtime(durable(journal)):
        tasks = BackgroundTasks()
        tasks.add_task(wait_then_append, str(go_on), str(out))
        await tasks()
        holder = sqlite3.connect(journal, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # a backup tool, say, holds the file a while
        try:
            go_on.touch()
            await wait_for(lambda: lines(out) == ["done"])
            await anyio.sleep(0.5)  # the thread's write of its end failed meanwhile
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await wait_for(lambda: entries(journal) == [], 10)  # written at a later sweep
    async with Runtime(OffloadConfig(journal=str(journal))):
        await anyio.sleep(0.2)
    assert lines(out) == ["done"]


async def test_a_task_refused_by_a_full_runtime_is_not_journaled(tmp_path: Path) -> None:
    journal, go_on = tmp_path / "j.db", tmp_path / "go"
    async with Runtime(durable(journal, max_pending=1)):
        first = BackgroundTasks()
        first.add_task(wait_then_append, str(go_on), str(tmp_path / "out"))
        second = BackgroundTasks()
        with pytest.raises(offload.Overloaded):
            second.add_task(append, str(tmp_path / "never"), "x").set(name="charge again")
        assert [e.name for e in entries(journal)] == ["wait_then_append"]
        go_on.touch()
        await first()
        await wait_for(lambda: entries(journal) == [])


async def test_a_durable_list_cannot_be_made_to_run_in_place(tmp_path: Path) -> None:
    async with Runtime(durable(tmp_path / "j.db")):
        tasks = BackgroundTasks()
        with pytest.raises(OffloadError, match="durable task list is detached"):
            tasks.detach = False
        with pytest.raises(OffloadError, match="detached"):
            JSONResponse({}, background=tasks, detach=False)


async def test_tasks_its_policy_skipped_or_a_cancel_stopped_leave_the_journal(
    tmp_path: Path,
) -> None:
    journal, go_on = tmp_path / "j.db", tmp_path / "go"
    async with Runtime(durable(journal)):
        tasks = BackgroundTasks(on_error="stop")
        tasks.add_task(fail_with_secret, "x").set(name="validate")
        tasks.add_task(append, str(tmp_path / "never"), "ship").set(name="ship")
        await tasks()
        waiting = BackgroundTasks()
        waiting.add_task(wait_then_append, str(go_on), str(tmp_path / "out"))
        cancelled = waiting.add_task(append, str(tmp_path / "never"), "x").set(name="dropped")
        await waiting()
        await wait_for(lambda: offload.status(cancelled.id) is not None)
        assert offload.cancel(cancelled.id)
        go_on.touch()
        await wait_for(lambda: [e.name for e in entries(journal)] == ["validate"])
    async with Runtime(OffloadConfig(journal=str(journal))):
        await anyio.sleep(0.3)
    assert not (tmp_path / "never").exists()


LOOP_ENDS = """
import sys
import anyio, offload
sys.path.insert(0, {tests!r})
from test_durable import sleep_then_append

async def main():
    runtime = offload.Runtime(offload.OffloadConfig(journal={journal!r}, durable=True))
    await runtime.__aenter__()  # and never left: the loop ends under it
    tasks = offload.BackgroundTasks()
    tasks.add_task(sleep_then_append, {out!r})
    await tasks()
    await anyio.sleep(0.2)

anyio.run(main)
"""


async def sleep_then_append(out: str) -> None:
    await anyio.sleep(30)
    append(out, "done")


async def test_tasks_cut_short_by_the_end_of_the_event_loop_stay_journaled(
    tmp_path: Path,
) -> None:
    journal, out = tmp_path / "j.db", tmp_path / "out"
    code = LOOP_ENDS.format(tests=str(TESTS), journal=str(journal), out=str(out))
    with anyio.fail_after(60):
        result = await anyio.run_process([sys.executable, "-c", textwrap.dedent(code)])
    assert result.returncode == 0, result.stderr
    assert [e.name for e in entries(journal)] == ["sleep_then_append"]


async def test_changing_a_task_turned_away_by_its_key_leaves_the_first_as_it_was(
    tmp_path: Path,
) -> None:
    journal, go_on = tmp_path / "j.db", tmp_path / "go"
    async with Runtime(durable(journal)):
        first = BackgroundTasks()
        first.add_task(wait_then_append, str(go_on), str(tmp_path / "alice")).set(key="k")
        second = BackgroundTasks()
        turned_away = second.add_task(append, str(tmp_path / "mallory"), "x").set(key="k")
        turned_away.set(timeout=30, name="refund")
        assert [(e.name, e.timeout) for e in entries(journal)] == [("wait_then_append", None)]
        go_on.touch()
        await first()
        await wait_for(lambda: entries(journal) == [])
    assert lines(tmp_path / "alice") == ["done"]
    assert not (tmp_path / "mallory").exists()


def test_a_file_that_is_not_a_journal_is_left_as_it_was(tmp_path: Path) -> None:
    app_db = tmp_path / "app.db"
    with sqlite3.connect(app_db) as db:
        db.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(JournalError, match="something else"):
        Journal(app_db).open()
    with sqlite3.connect(app_db) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    empty = tmp_path / "empty.db"
    empty.touch()
    listing = cli(str(empty))
    assert listing.returncode == 2
    assert "not a journal" in listing.stderr
    assert empty.stat().st_size == 0


async def test_retrying_a_task_whose_key_is_taken_says_so(tmp_path: Path) -> None:
    journal, go_on = tmp_path / "j.db", tmp_path / "go"
    async with Runtime(durable(journal, shutdown_timeout=0.1)):
        failing = BackgroundTasks()
        failed = failing.add_task(fail_with_secret, "x").set(key="login")
        await failing()
        await wait_for(lambda: [e.state for e in entries(journal)] == ["failed"])
        again = BackgroundTasks()
        again.add_task(wait_then_append, str(go_on), str(tmp_path / "out")).set(key="login")
        await again()
        retried = cli(str(journal), "--retry", failed.id)
        go_on.touch()
    assert retried.returncode == 1
    assert "has its key" in retried.stderr
    assert "Traceback" not in retried.stderr
