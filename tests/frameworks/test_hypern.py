"""offload with Hypern 0.3.15: offload's tasks given to Hypern's responses, run from
Hypern's own threads on every executor, and Hypern's own tasks run by offload.

Most tests hand tasks to Hypern's own background pool (``hypern.BackgroundTasks``, what a
response's ``backgrounds=`` uses) in this process; the rest serve ``hypern_testapp`` with
Hypern's own server on 127.0.0.1 and check what it leaves once stopped.
"""

from __future__ import annotations

import importlib
import importlib.abc
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any

import httpx
import hypern
import pytest
from hypern_server import FRAMEWORKS, GONE_WITHIN, pid_alive, read_mark, serve, wait_until
from hypern_testapp import (
    HypernTask,
    TaskFailed,
    fail,
    mark,
    mark_after,
    mark_async,
    mark_in_process,
    mark_then_sleep,
    on_process,
)

import offload
from offload.hypern import BackgroundTask, BackgroundTasks
from offload.responses import BackgroundsMixin
from test_docs import python_samples, run_sample  # type: ignore[import-not-found, unused-ignore]

ROOT = FRAMEWORKS.parent.parent
EXAMPLES = ROOT / "examples"
PAGE = ROOT / "docs" / "frameworks" / "hypern.md"

# Hypern's offload tasks: the objects a response's backgrounds= takes.
Handed = BackgroundTask | BackgroundTasks


def hand_to_hypern(*tasks: Handed) -> None:
    """Give ``tasks`` to Hypern's own background pool, as a response does with its
    ``backgrounds=``: Hypern reads each one's attributes and calls it in its threads."""
    pool = hypern.BackgroundTasks()
    for task in tasks:
        # Typed as Hypern's own class, but Hypern reads only the attributes it needs.
        pool.add_task(task)  # type: ignore[arg-type]
    pool.execute_all()


@pytest.fixture
def reports() -> list[offload.TaskReport]:
    """The reports of every task run from here on, through the config's ``on_report``."""
    seen: list[offload.TaskReport] = []
    offload.configure(offload.OffloadConfig(on_report=seen.append, process_workers=1))
    return seen


def wait_for_reports(seen: list[offload.TaskReport], count: int) -> list[offload.TaskReport]:
    assert wait_until(lambda: len(seen) >= count), f"reports: {seen}"
    return sorted(seen, key=lambda report: report.id)


# --- the module -----------------------------------------------------------------------------


class HypernMissing(importlib.abc.MetaPathFinder):
    """Finds no ``hypern``, as in an environment without it."""

    def find_spec(self, name: str, *_: object) -> None:
        if name == "hypern":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_importing_it_without_hypern_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("offload.hypern", "hypern.response", "hypern"):
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [HypernMissing(), *sys.meta_path])
    with pytest.raises(ImportError, match=r"'hypern' extra: pip install \"offload\[hypern\]\""):
        importlib.import_module("offload.hypern")


def test_importing_it_with_another_hypern_says_which_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("offload.hypern", "hypern.response"):
        monkeypatch.delitem(sys.modules, name)
    # Hypern 1 has no hypern.response: its responses take no backgrounds=.
    monkeypatch.setitem(sys.modules, "hypern", types.ModuleType("hypern"))
    with pytest.raises(ImportError, match=r"backgrounds=\[\.\.\.\] \(Hypern 0\.3\)"):
        importlib.import_module("offload.hypern")


# --- what Hypern takes ------------------------------------------------------------------------


def test_hypern_takes_offload_hypern_tasks_and_not_plain_ones(tmp_path: Path) -> None:
    with pytest.raises(AttributeError, match="function"):
        hand_to_hypern(offload.BackgroundTask(mark, str(tmp_path / "plain")))  # type: ignore[arg-type]
    hand_to_hypern(BackgroundTask(mark, str(tmp_path / "hypern")))
    read_mark(tmp_path / "hypern")
    assert not (tmp_path / "plain").exists()


def test_the_attributes_hypern_reads_call_the_task_with_its_own_arguments(
    tmp_path: Path,
) -> None:
    task = BackgroundTask(func=mark, path=str(tmp_path / "mark"))
    assert (task.func, task.args, task.kwargs) == (mark, (), {"path": str(tmp_path / "mark")})
    assert task.timeout_secs is None  # Hypern's own timeout, which it does not enforce
    task.function(*task.args, **task.kwargs)  # what Hypern does, in its thread
    read_mark(tmp_path / "mark")


@pytest.mark.parametrize(
    ("function", "executor"),
    [(mark, "thread"), (mark_async, "inline"), (mark, "process")],
    ids=["sync", "async", "process"],
)
def test_each_executor_runs_tasks_handed_over_by_hypern(
    function: Any, executor: str, tmp_path: Path, reports: list[offload.TaskReport]
) -> None:
    hand_to_hypern(BackgroundTask(function, str(tmp_path / "mark")).set(executor=executor))
    where = read_mark(tmp_path / "mark")
    [report] = wait_for_reports(reports, 1)
    assert (report.name, report.executor, report.status) == (
        function.__name__,
        executor,
        "succeeded",
    )
    assert (where["pid"] != os.getpid()) is (executor == "process")
    # Hypern's pool threads, where no event loop runs, only hand the task over.
    assert not where["thread"].startswith("Dummy")
    assert where["loop"] is (executor == "inline")


def test_hypern_threads_are_not_held_by_the_tasks(
    tmp_path: Path, reports: list[offload.TaskReport]
) -> None:
    # Hypern runs its own tasks in a thread per CPU: six one-second tasks would take three
    # seconds on two. Handed over at once, they all run together.
    marks = [tmp_path / f"{index}" for index in range(6)]
    hand_to_hypern(*(BackgroundTask(mark_after, 1.0, str(path)) for path in marks))
    runs = [read_mark(path) for path in marks]
    assert max(run["started"] for run in runs) < min(run["at"] for run in runs)
    wait_for_reports(reports, 6)


def test_one_thread_limit_bounds_every_task_handed_over(tmp_path: Path) -> None:
    offload.configure(offload.OffloadConfig(thread_limit=1))
    marks = [tmp_path / f"{index}" for index in range(3)]
    hand_to_hypern(*(BackgroundTask(mark_after, 0.2, str(path)) for path in marks))
    runs = sorted((read_mark(path) for path in marks), key=lambda run: run["started"])
    for earlier, later in itertools.pairwise(runs):
        assert later["started"] >= earlier["at"], runs


def test_process_tasks_reuse_the_worker_processes(
    tmp_path: Path, reports: list[offload.TaskReport]
) -> None:
    pids = []
    for index in range(3):  # one after another, each from a Hypern thread
        path = tmp_path / f"{index}"
        hand_to_hypern(BackgroundTask(mark, str(path)).set(executor="process"))
        pids.append(read_mark(path)["pid"])
    assert len(set(pids)) == 1  # process_workers=1: the same worker, not a pool per task
    assert pids[0] != os.getpid()
    wait_for_reports(reports, 3)


# --- what offload adds to a task handed over ---------------------------------------------------


def test_a_failure_is_logged_and_reported_without_its_arguments(
    caplog: pytest.LogCaptureFixture, reports: list[offload.TaskReport]
) -> None:
    secret = "s3cret-argument"

    def fails_with(value: str) -> None:
        raise TaskFailed("failed on purpose")

    with caplog.at_level(logging.ERROR, logger="offload"):
        hand_to_hypern(BackgroundTask(fails_with, secret))
        [report] = wait_for_reports(reports, 1)
        # The hand-over says once more that no caller gets the error, once it has ended.
        assert wait_until(lambda: len(caplog.records) >= 2), caplog.records
    assert (report.name, report.status) == (
        "test_a_failure_is_logged_and_reported_without_its_arguments.<locals>.fails_with",
        "failed",
    )
    assert isinstance(report.error, TaskFailed)
    assert any(record.exc_info and record.exc_info[0] is TaskFailed for record in caplog.records)
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_retries_and_timeouts_apply(tmp_path: Path, reports: list[offload.TaskReport]) -> None:
    attempts = tmp_path / "attempts"

    def fails_once() -> None:
        if not attempts.exists():
            attempts.touch()
            raise TaskFailed("first attempt")

    # A timeout counts from the task's start, a cold worker's start included: warm it first.
    hand_to_hypern(BackgroundTask(mark, str(tmp_path / "warm")).set(executor="process"))
    read_mark(tmp_path / "warm")
    hand_to_hypern(
        BackgroundTask(fails_once).set(retries=1),
        BackgroundTask(mark_then_sleep, str(tmp_path / "slow"), 60).set(
            executor="process", timeout=1
        ),
    )
    worker = read_mark(tmp_path / "slow")["pid"]
    by_name = {report.name: report for report in wait_for_reports(reports, 3)}
    retried = by_name["test_retries_and_timeouts_apply.<locals>.fails_once"]
    assert (retried.status, retried.attempts) == ("succeeded", 2)
    assert by_name["mark_then_sleep"].status == "timed_out"
    assert wait_until(lambda: not pid_alive(worker), GONE_WITHIN)  # the work really stopped


def test_a_list_runs_in_order_with_its_policy(tmp_path: Path) -> None:
    tasks = BackgroundTasks(
        [
            BackgroundTask(mark_after, 0.3, str(tmp_path / "first")),
            BackgroundTask(fail, "failed on purpose"),
            BackgroundTask(mark, str(tmp_path / "last")),
        ],
        on_error="continue",
    )
    hand_to_hypern(tasks)
    assert read_mark(tmp_path / "last")["at"] >= read_mark(tmp_path / "first")["at"]
    assert wait_until(lambda: len(tasks.reports) == 3)
    assert [report.status for report in tasks.reports] == ["succeeded", "failed", "succeeded"]


def test_a_list_may_run_its_tasks_together(tmp_path: Path) -> None:
    marks = [tmp_path / f"{index}" for index in range(3)]
    tasks = BackgroundTasks(concurrency="group")
    for path in marks:
        tasks.add_task(mark_after, 0.5, str(path))
    hand_to_hypern(tasks)
    runs = [read_mark(path) for path in marks]
    assert max(run["started"] for run in runs) < min(run["at"] for run in runs)
    assert wait_until(lambda: len(tasks.reports) == 3)


# --- Hypern's own tasks, run by offload --------------------------------------------------------


@pytest.mark.anyio
async def test_hypern_tasks_are_unpacked_to_their_function(tmp_path: Path) -> None:
    chosen: list[object] = []

    def choose(task: offload.BackgroundTask) -> str | None:
        chosen.append(task.func)
        return on_process(task)

    own = [
        HypernTask(mark, args=[str(tmp_path / "thread")], kwargs={}),
        HypernTask(mark_in_process, kwargs={"path": str(tmp_path / "process")}),
    ]
    with pytest.raises(TypeError):
        pickle.dumps(own[1])  # so the process executor can only have pickled the function
    tasks = offload.BackgroundTasks(own, executor=choose)
    assert chosen == [mark, mark_in_process]
    assert [(task.func, task.args, task.kwargs) for task in tasks.tasks] == [
        (mark, (str(tmp_path / "thread"),), {}),
        (mark_in_process, (), {"path": str(tmp_path / "process")}),
    ]
    await tasks()
    assert [(report.name, report.executor) for report in tasks.reports] == [
        ("mark", "thread"),
        ("mark_in_process", "process"),
    ]
    assert read_mark(tmp_path / "thread")["pid"] == os.getpid()
    assert read_mark(tmp_path / "process")["pid"] != os.getpid()


def test_hypern_tasks_are_taken_by_the_response_mixin(tmp_path: Path) -> None:
    class Response(BackgroundsMixin):
        background: offload.BackgroundTasks | None = None

    own = HypernTask(mark, args=[str(tmp_path / "mark")], kwargs=None)
    response = Response(backgrounds=[own], executor="process")
    assert response.background is not None
    [task] = response.background.tasks
    assert (task.func, task.args, task.name, task.runs_on) == (
        mark,
        (str(tmp_path / "mark"),),
        "mark",
        "process",
    )


def test_hypern_tasks_in_an_offload_hypern_list_run_from_hypern(
    tmp_path: Path, reports: list[offload.TaskReport]
) -> None:
    own = HypernTask(mark_in_process, args=[str(tmp_path / "mark")], kwargs={})
    hand_to_hypern(BackgroundTasks([own], executor=on_process))
    assert read_mark(tmp_path / "mark")["pid"] != os.getpid()
    [report] = wait_for_reports(reports, 1)
    assert (report.name, report.executor, report.status) == (
        "mark_in_process",
        "process",
        "succeeded",
    )


# --- the event loop offload keeps for Hypern ---------------------------------------------------


def run_script(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(FRAMEWORKS), **env},
    )


HAND_OVER_AND_EXIT = """
    import os
    import time

    import hypern
    from offload.hypern import BackgroundTask, BackgroundTasks
    from hypern_testapp import mark, mark_then_sleep

    tasks = BackgroundTasks(
        [BackgroundTask(mark, "started"), BackgroundTask(mark_then_sleep, "mark", {seconds})]
    )
    pool = hypern.BackgroundTasks()
    pool.add_task(tasks)
    pool.execute_all()
    deadline = time.monotonic() + 20
    while not os.path.exists("started") and time.monotonic() < deadline:
        time.sleep(0.01)  # until offload runs the list
    print(time.time(), flush=True)  # then the program ends
"""


def test_exit_waits_for_the_tasks_handed_over(tmp_path: Path) -> None:
    result = run_script(HAND_OVER_AND_EXIT.format(seconds=1.0), tmp_path)
    assert result.returncode == 0, result.stderr
    assert 1 <= time.time() - float(result.stdout) < 20
    assert (tmp_path / "mark").exists()


def test_exit_gives_tasks_the_shutdown_timeout_then_names_them(tmp_path: Path) -> None:
    result = run_script(
        HAND_OVER_AND_EXIT.format(seconds=30.0), tmp_path, OFFLOAD_SHUTDOWN_TIMEOUT="1"
    )
    ended = time.time()
    assert result.returncode == 0, result.stderr
    assert 1 <= ended - float(result.stdout) < 20
    assert "unfinished after 1.0s: mark_then_sleep\n" in result.stderr


def _hand_over_in_child(path: str) -> None:
    # Called as Hypern would, not through its pool: Hypern's own runtime does not survive a
    # fork either, which is why Hypern starts it only in the process that serves.
    task = BackgroundTask(mark, path)
    threading.Thread(target=task.function, args=task.args).start()
    read_mark(Path(path))


def test_a_forked_process_gets_an_event_loop_of_its_own(tmp_path: Path) -> None:
    # Hypern forks the process that serves; the parent's loop thread is not in the child.
    hand_to_hypern(BackgroundTask(mark, str(tmp_path / "parent")))
    read_mark(tmp_path / "parent")
    child = multiprocessing.get_context("fork").Process(
        target=_hand_over_in_child, args=(str(tmp_path / "child"),)
    )
    child.start()
    child.join(30)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the forked process hung handing a task over")
    assert child.exitcode == 0
    assert read_mark(tmp_path / "child")["pid"] == child.pid


# --- Hypern's own server ----------------------------------------------------------------------

SERVE_TESTAPP = "import hypern_testapp; hypern_testapp.main()"


def test_the_server_runs_a_sync_an_async_and_a_process_task(tmp_path: Path) -> None:
    with serve(SERVE_TESTAPP, tmp_path) as server:
        endpoint = server.get("/tasks?run=a")
        sync, async_, process = (
            read_mark(server.marks / f"a-{name}.json") for name in ("sync", "async", "process")
        )
        reports = server.reports(3)
    assert sync["pid"] == async_["pid"] == endpoint["pid"] != server.pid
    assert process["pid"] not in (endpoint["pid"], server.pid)
    assert (sync["loop"], async_["loop"]) == (False, True)
    assert sorted((report["name"], report["executor"], report["status"]) for report in reports) == [
        ("mark", "process", "succeeded"),
        ("mark", "thread", "succeeded"),
        ("mark_async", "inline", "succeeded"),
    ]
    assert server.leftovers == {}, server.output()


def test_the_server_runs_hypern_tasks_through_offload(tmp_path: Path) -> None:
    with serve(SERVE_TESTAPP, tmp_path) as server:
        endpoint = server.get("/hypern-tasks?run=b")
        thread = read_mark(server.marks / "b-own-thread.json")
        process = read_mark(server.marks / "b-own-process.json")
        reports = server.reports(2)
    assert thread["pid"] == endpoint["pid"] != process["pid"]
    assert [(report["name"], report["executor"]) for report in reports] == [
        ("mark", "thread"),
        ("mark_in_process", "process"),
    ]
    assert server.leftovers == {}, server.output()


def test_the_server_runs_a_list_in_order_with_its_policy(tmp_path: Path) -> None:
    with serve(SERVE_TESTAPP, tmp_path) as server:
        server.get("/list?run=c")
        first = read_mark(server.marks / "c-first.json")
        last = read_mark(server.marks / "c-last.json")
        reports = server.reports(3)
    assert last["at"] >= first["at"]
    assert [(report["name"], report["status"]) for report in reports] == [
        ("mark_after", "succeeded"),
        ("fail", "failed"),
        ("mark", "succeeded"),
    ]
    assert "TaskFailed: failed on purpose" in server.output()


def test_the_server_stops_a_process_task_that_runs_out_of_time(tmp_path: Path) -> None:
    with serve(SERVE_TESTAPP, tmp_path) as server:
        # A timeout counts from the task's start, a cold worker's start included: warm it.
        server.get("/tasks?run=warm")
        read_mark(server.marks / "warm-process.json")
        server.get("/timeout?run=d")
        worker = read_mark(server.marks / "d-slow.json")["pid"]
        read_mark(server.marks / "d-after.json")
        reports = server.reports(5)
        assert wait_until(lambda: not pid_alive(worker), GONE_WITHIN)
    assert [(report["name"], report["status"]) for report in reports[-2:]] == [
        ("mark_then_sleep", "timed_out"),
        ("mark", "succeeded"),
    ]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=lambda stop: stop.name)
def test_stopping_the_server_leaves_no_process(stop: signal.Signals, tmp_path: Path) -> None:
    with serve(SERVE_TESTAPP, tmp_path, stop=stop) as server:
        server.get("/long?run=e")
        worker = read_mark(server.marks / "e-long.json")["pid"]
        assert pid_alive(worker)
    assert server.process.returncode == 0, server.output()
    assert server.leftovers == {}, server.output()  # offload's processes died with the server
    assert not pid_alive(worker)
    assert list(server.tmpdir.glob("pymp-*")) == []


def test_every_process_of_a_multi_process_server_runs_tasks_and_leaves_none(
    tmp_path: Path,
) -> None:
    # Hypern forks each serving process from its main one: each gets offload's event loop
    # and worker processes of its own, and they all end with the server.
    with serve(SERVE_TESTAPP, tmp_path, args=["--processes", "2"]) as server:
        serving, workers = set(), set()
        for run in range(40):  # until both have answered: the kernel picks which accepts
            serving.add(server.get(f"/tasks?run=m{run}")["pid"])
            workers.add(read_mark(server.marks / f"m{run}-process.json")["pid"])
            read_mark(server.marks / f"m{run}-sync.json")
            if len(serving) == 2:
                break
        assert len(serving) == 2
        assert server.pid not in serving
        assert not workers & serving
    assert server.leftovers == {}, server.output()
    assert not any(pid_alive(pid) for pid in workers)


# --- the example and the docs -----------------------------------------------------------------


def test_the_example_app_runs_its_tasks(tmp_path: Path) -> None:
    # The port comes from main(), the way the example is run, not from --port.
    code = "import sys, hypern_app; hypern_app.main(int(sys.argv[sys.argv.index('--port') + 1]))"
    printed = ("rendered in process", "archived", "notification sent")
    with serve(code, tmp_path, path=[EXAMPLES]) as server:
        response = httpx.post(server.url + "/reports/42", timeout=20)
        assert response.json() == {"report": "42", "status": "accepted"}
        assert wait_until(lambda: all(line in server.output() for line in printed))
    assert server.leftovers == {}, server.output()


def test_the_samples_of_the_docs_page_run() -> None:
    samples = python_samples(PAGE)
    assert len(samples) == 3
    namespace: dict[str, object] = {"__name__": "docs_sample"}
    for sample in samples:
        run_sample(sample, namespace)
    assert isinstance(namespace["app"], hypern.Hypern)
