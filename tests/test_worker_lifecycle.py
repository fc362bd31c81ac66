"""The processes offload starts never outlive what started them, and stop as a tree.

Each test here runs real worker processes and, where the parent must die, a real parent in
a session of its own, so that whatever it leaves behind can be counted after it is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import process_tasks
from offload import BackgroundTask, BackgroundTasks, OffloadConfig, Runtime
from offload.executors._logs import LogForwarder, PipeHandler
from processes import kill_session, pid_exists, wait_for_no_session_processes

TESTS = Path(__file__).parent
#: What a subprocess needs to import the tests' task modules (and the same offload).
PYTHONPATH = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))


def wait_until_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_exists(pid) and _state(pid) != "Z":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0].decode()
    except OSError:
        return "gone"


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["subprocess", "fork"])
async def test_a_timeout_stops_the_processes_the_task_started(tmp_path: Path, how: str) -> None:
    pid_file = tmp_path / "grandchild"
    task = BackgroundTask(process_tasks.start_grandchild_then_hang, str(pid_file), how)
    tasks = BackgroundTasks([task.set(timeout=1)], executor="process", on_error="continue")
    async with Runtime(OffloadConfig(process_workers=1)):
        started = time.monotonic()
        await tasks()
        elapsed = time.monotonic() - started
        grandchild = int(pid_file.read_text())
        try:
            assert tasks.reports[0].status == "timed_out"
            assert wait_until_gone(grandchild, 2), f"grandchild {grandchild} outlived the timeout"
            # Not a benchmark: a wait on a pipe the grandchild held used to add 5 s.
            assert elapsed < 4, f"the timeout took {elapsed:.1f}s"
            assert _log_threads() == []
        finally:
            if pid_exists(grandchild):
                os.kill(grandchild, signal.SIGKILL)


def _log_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("offload-worker-logs")]


SERVER = """
    import anyio, os, sys
    import offload, process_tasks
    from offload import BackgroundTasks

    async def main() -> None:
        config = offload.OffloadConfig(process_workers=2, start_method={start_method!r})
        {enter}
        tasks = BackgroundTasks(executor="process")
        tasks.add_task(process_tasks.pid)
        await tasks()
        print("ready", flush=True)
        {end}

    if __name__ == "__main__":
        anyio.run(main)
"""

ENDINGS = {
    # The default runtime, closed at interpreter exit.
    "clean exit": ("", "return"),
    # A signal's default action: no atexit, no finally.
    "sigterm": ("await offload.Runtime(config).__aenter__()", "await anyio.sleep(60)"),
    "sigkill": ("await offload.Runtime(config).__aenter__()", "await anyio.sleep(60)"),
    "os._exit": ("await offload.Runtime(config).__aenter__()", "os._exit(3)"),
}


@pytest.fixture
def server_session() -> Iterator[list[int]]:
    """Sessions of the servers a test starts; every process left in them is killed after."""
    sessions: list[int] = []
    yield sessions
    for session in sessions:
        kill_session(session)


@pytest.mark.parametrize("start_method", ["forkserver", "fork"])
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_no_process_outlives_the_server_however_it_ends(
    tmp_path: Path, ending: str, start_method: str, server_session: list[int]
) -> None:
    enter, end = ENDINGS[ending]
    script = tmp_path / "server.py"
    code = SERVER.format(enter=enter, end=end, start_method=start_method)
    script.write_text(textwrap.dedent(code))
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "TMPDIR": str(temp)}
    log = tmp_path / "stderr"
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
    server_session.append(server.pid)
    assert server.stdout is not None
    with server.stdout:
        assert server.stdout.readline() == b"ready\n", log.read_text()
        if ending in ("sigterm", "sigkill"):
            running = wait_for_no_session_processes(server.pid, 0)
            # The server and its workers, and for forkserver the fork server too.
            assert len(running) >= (4 if start_method == "forkserver" else 3), running
            server.send_signal(signal.SIGTERM if ending == "sigterm" else signal.SIGKILL)
        server.wait(timeout=30)
    leftovers = wait_for_no_session_processes(server.pid, 2)
    assert leftovers == {}, f"left running 2 s after the server ended: {leftovers}"
    assert list(temp.iterdir()) == []


def run_script(script: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import anyio, process_tasks
            from offload import BackgroundTasks

            async def main() -> None:
                await BackgroundTasks([process_tasks.pid], executor="process")()

            anyio.run(main)
            """
        )
    )
    result = run_script(script)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"main module {script} runs its top-level code (line 8)" in last_line
    assert 'under `if __name__ == "__main__":`' in last_line
    assert "bootstrapping phase" not in result.stderr  # no worker ran the script again


def test_a_script_with_a_main_guard_runs_process_tasks(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import anyio, process_tasks
            from offload import BackgroundTasks

            async def main() -> None:
                tasks = BackgroundTasks([process_tasks.pid], executor="process")
                await tasks()
                print(tasks.reports[0].status)

            if __name__ == "__main__":
                anyio.run(main)
            """
        )
    )
    result = run_script(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "succeeded\n"


def run_a_process_task(results: multiprocessing.Queue[str]) -> None:
    async def main() -> None:
        tasks = BackgroundTasks([process_tasks.pid], executor="process", on_error="continue")
        async with Runtime(OffloadConfig(process_workers=1)):
            await tasks()
        results.put(str(tasks.reports[0].error))

    anyio.run(main)


def test_a_daemonic_process_gets_the_cause_and_the_fix() -> None:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[str] = context.Queue()
    server = context.Process(target=run_a_process_task, args=(results,), daemon=True)
    server.start()
    try:
        error = results.get(timeout=60)
    finally:
        server.join(30)
        server.kill()
    assert "is a daemonic process, and those may not have children" in error
    assert "`daemon = false`" in error
    assert "-w 0" in error


ABANDONING = """
    import asyncio, time
    import offload
    from offload import BackgroundTask, BackgroundTasks

    def slow(n: int) -> None:
        time.sleep(0.5)

    async def main() -> None:
        # Entered and never closed, as under a server's forced exit (Ctrl-C twice).
        await offload.Runtime(offload.OffloadConfig(thread_limit=1)).__aenter__()
        for n in range(3):
            tasks = BackgroundTasks(detach=True)
            tasks.add_task(slow, n).set(name=f"slow-{n}")
            await tasks()
        await asyncio.sleep(0.1)

    asyncio.run(main())
"""


def test_an_event_loop_that_ends_under_a_runtime_names_the_tasks_it_abandons(
    tmp_path: Path,
) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(ABANDONING))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert (
        "The event loop of an offload Runtime ended before the runtime was closed, abandoning "
        "3 background task(s): slow-0, slow-1, slow-2. A server's forced exit (Ctrl-C twice)"
    ) in result.stderr


def test_the_log_forwarder_stops_although_a_grandchild_holds_the_pipe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    forwarder = LogForwarder(reader, "offload-worker-logs-test")
    record = logging.LogRecord("offload.test", logging.WARNING, __file__, 1, "sent", None, None)
    PipeHandler(writer).emit(record)
    try:
        started = time.monotonic()
        forwarder.close()  # the writer is still open, as a grandchild of a worker would hold it
        assert time.monotonic() - started < 2
    finally:
        writer.close()
    assert [r.getMessage() for r in caplog.records if r.name == "offload.test"] == ["sent"]
