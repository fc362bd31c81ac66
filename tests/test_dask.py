"""DaskExecutor, against a real Dask scheduler and two real workers on 127.0.0.1.

The cluster runs as ``python -m distributed.cli.dask_scheduler`` and ``dask_worker``
subprocesses (each worker under its nanny, as ``dask worker`` deploys it), started once for
this module. Tasks come from ``process_tasks`` and ``servers``, which the scheduler and the
workers import through ``PYTHONPATH``, or are local functions, which cloudpickle sends by value.

Run with ``pytest -m dask``; the main suite deselects them with ``-m "not dask"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import psutil  # type: ignore[import-untyped]  # comes with distributed; no type hints
import pytest
from distributed import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

import offload
import process_tasks
from offload import (
    BackgroundTask,
    BackgroundTasks,
    ConfigError,
    NotPicklable,
    OffloadConfig,
    Runtime,
    TaskReport,
    TaskTimeout,
    WorkerCrashed,
)
from offload.executors import executor_names
from offload.executors.dask import DaskExecutor
from offload.starlette import PlainTextResponse
from servers import burn_cpu, serve

pytestmark = [pytest.mark.dask, pytest.mark.anyio]

TESTS = Path(__file__).parent
WORKERS = 2


@dataclass
class Cluster:
    """A running cluster, and a client of the test's own to look at it."""

    address: str
    observer: Client

    def wait_for_workers(self) -> None:
        self.observer.wait_for_workers(WORKERS, timeout=30)

    def clients(self) -> set[str]:
        """Return the ids of the clients the scheduler has (closed ones leave soon after)."""
        ids: list[str] = self.observer.run_on_scheduler(  # type: ignore[no-untyped-call]
            lambda dask_scheduler: list(dask_scheduler.clients)
        )
        return set(ids)

    def busy_workers(self) -> int:
        """Return how many workers the scheduler has given a task to."""
        processing = self.observer.processing()  # type: ignore[no-untyped-call]
        return sum(1 for keys in processing.values() if keys)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


async def await_until(condition: Callable[[], object]) -> None:
    # The condition lives in another process (the scheduler): polling is all there is.
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.01)


def _spawn(module: str, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:  # the child keeps its own copy of the file descriptor
        return subprocess.Popen(
            [sys.executable, "-m", f"distributed.cli.{module}", *args],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the workers, then the scheduler, and fail if any process of theirs lives on."""
    family: list[psutil.Process] = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):  # it may have exited already
            parent = psutil.Process(process.pid)
            family += [parent, *parent.children(recursive=True)]
    for process in reversed(processes):  # workers first: a nanny stops its worker itself
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(20)
    _, alive = psutil.wait_procs(family, timeout=20)
    for leftover in alive:
        leftover.kill()
    assert not alive, f"cluster processes left running: {alive}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Start a scheduler and two single-threaded workers, each under a nanny."""
    logs = tmp_path_factory.mktemp("dask")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        # Fail a task on the first crash of its worker, as the process executor does; by
        # default Dask runs it again on another worker, up to 3 times.
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
    }
    scheduler_file = logs / "scheduler.json"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            _spawn(
                "dask_scheduler",
                [
                    *("--host", "127.0.0.1", "--port", "0", "--no-dashboard"),
                    *("--scheduler-file", str(scheduler_file)),
                ],
                logs / "scheduler.log",
                env,
            )
        )
        wait_until(lambda: processes[0].poll() is not None or scheduler_file.exists(), "it starts")
        assert processes[0].poll() is None, (logs / "scheduler.log").read_text()
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(WORKERS):
            processes.append(
                _spawn(
                    "dask_worker",
                    [
                        *(address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"),
                        *("--death-timeout", "30"),  # gone even if this process dies unclean
                    ],
                    logs / f"worker-{i}.log",
                    env,
                )
            )
        observer = Client(  # type: ignore[no-untyped-call]
            address, set_as_default=False, timeout=30
        )
        try:
            cluster = Cluster(address, observer)
            cluster.wait_for_workers()
            yield cluster
        finally:
            observer.close()  # type: ignore[no-untyped-call]
    finally:
        _stop(processes)


async def call(executor: DaskExecutor, func: Callable[..., Any], *args: Any) -> Any:
    return await executor.run(BackgroundTask(func, *args))


async def test_tasks_run_on_the_workers_and_errors_come_back_as_raised(cluster: Cluster) -> None:
    async with DaskExecutor(cluster.address) as executor:
        assert await call(executor, process_tasks.add, 2, 3) == 5
        assert await call(executor, process_tasks.pid) != os.getpid()
        # A coroutine function runs with asyncio.run in the worker, whatever loop runs here.
        assert await call(executor, process_tasks.add_async, 2, 3) == (
            5,
            "_UnixSelectorEventLoop",
        )
        # cloudpickle sends a lambda by value, where the process executor would refuse it.
        assert await call(executor, lambda: 6 * 7) == 42
        with pytest.raises(ValueError, match="^broken$"):
            await call(executor, process_tasks.fail, "broken")


async def test_identical_calls_each_run(cluster: Cluster) -> None:
    results: list[uuid.UUID] = []

    async def run(executor: DaskExecutor) -> None:
        results.append(await call(executor, uuid.uuid4))

    async with DaskExecutor(cluster.address) as executor, anyio.create_task_group() as group:
        for _ in range(2):  # in flight together: with pure=True, Dask would run one
            group.start_soon(run, executor)
    assert len(set(results)) == 2


def test_a_call_that_does_not_pickle_fails_when_the_task_is_bound(cluster: Cluster) -> None:
    tasks = BackgroundTasks(executor=DaskExecutor(cluster.address))
    with pytest.raises(NotPicklable) as caught:
        tasks.add_task(process_tasks.unwrap, threading.Lock())  # type: ignore[arg-type]
    assert str(caught.value).startswith(
        "dask task 'unwrap' cannot be pickled: argument 0 (a _thread.lock) does not pickle "
        "(TypeError: cannot pickle '_thread.lock' object)"
    )
    lock = threading.Lock()
    with pytest.raises(NotPicklable, match=r"its function test_dask\..*<lambda> does not pickle"):
        tasks.add_task(lambda: lock.locked())
    tasks.add_task(lambda: 42)  # a lambda of plain data is fine: cloudpickle sends it by value


async def test_a_timeout_cancels_the_dask_future_of_a_waiting_task(
    cluster: Cluster, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    config = OffloadConfig(executor="dask", dask_address=cluster.address, on_error="continue")
    async with Runtime(config), anyio.create_task_group() as group:
        for _ in range(WORKERS):  # keep every worker busy
            group.start_soon(BackgroundTasks([BackgroundTask(process_tasks.sleep_then_pid, 1.5)]))
        with anyio.fail_after(30):
            await await_until(lambda: cluster.busy_workers() == WORKERS)
        waiting = BackgroundTasks([BackgroundTask(marker.touch).set(timeout=0.3)])
        await waiting()
    [report] = waiting.reports
    assert report.status == "timed_out"
    assert isinstance(report.error, TaskTimeout)
    # Had its Dask future not been cancelled, it would have run when a worker came free.
    async with DaskExecutor(cluster.address) as executor:
        for _ in range(WORKERS):
            await call(executor, process_tasks.pid)
    assert not marker.exists()


async def test_a_client_made_from_an_address_is_closed_and_one_passed_in_is_not(
    cluster: Cluster,
) -> None:
    before = cluster.clients()
    executor = DaskExecutor(cluster.address)
    for _ in range(2):  # start() works again after aclose()
        async with executor:
            assert len(cluster.clients() - before) == 1
            assert await call(executor, process_tasks.add, 1, 2) == 3
        with anyio.fail_after(30):
            await await_until(lambda: not cluster.clients() - before)

    given = await anyio.to_thread.run_sync(partial(Client, cluster.address, set_as_default=False))
    try:
        async with DaskExecutor(given) as executor:
            assert await call(executor, process_tasks.add, 1, 2) == 3
        assert given.status == "running"
        assert given.id in cluster.clients()
        assert given.submit(process_tasks.add, 2, 2).result() == 4
    finally:
        await anyio.to_thread.run_sync(given.close)


async def test_a_runtime_connects_to_the_configured_scheduler_when_it_starts(
    cluster: Cluster,
) -> None:
    before = cluster.clients()
    async with Runtime(OffloadConfig(executor="dask", dask_address=cluster.address)):
        assert len(cluster.clients() - before) == 1  # before any task: at startup
        tasks = BackgroundTasks()
        tasks.add_task(process_tasks.add, 1, 2)
        await tasks()
    assert [(r.executor, r.status) for r in tasks.reports] == [("dask", "succeeded")]


def test_a_worker_killed_mid_task_fails_that_task_and_the_next_task_runs(
    cluster: Cluster, tmp_path: Path
) -> None:
    reports: list[TaskReport] = []
    config = OffloadConfig(
        executor="dask",
        dask_address=cluster.address,
        on_error="continue",
        on_report=reports.append,
    )
    pid_file = tmp_path / "worker.pid"

    async def spin(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            "spinning", backgrounds=[BackgroundTask(process_tasks.spin_forever, str(pid_file))]
        )

    async def add(request: Request) -> PlainTextResponse:
        return PlainTextResponse("adding", backgrounds=[BackgroundTask(process_tasks.add, 1, 2)])

    app = Starlette(
        routes=[Route("/spin", spin), Route("/add", add)], lifespan=offload.lifespan(config)
    )
    with serve(app) as url:
        assert httpx.get(f"{url}/spin", timeout=30).text == "spinning"
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the task runs")
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        wait_until(lambda: reports, "the task is reported")
        assert httpx.get(f"{url}/add", timeout=30).text == "adding"
        wait_until(lambda: len(reports) == 2, "the next task is reported")
    crashed, added = reports
    assert (crashed.name, crashed.executor, crashed.status) == ("spin_forever", "dask", "failed")
    assert isinstance(crashed.error, WorkerCrashed)
    assert "died while running task 'spin_forever'" in str(crashed.error)
    assert (added.name, added.executor, added.status) == ("add", "dask", "succeeded")
    cluster.wait_for_workers()  # its nanny restarts the killed worker, for the tests after


def render_app(config: OffloadConfig, marker: Path) -> Starlette:
    """An app that knows nothing of where its background task runs."""

    async def render(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            "accepted", backgrounds=[BackgroundTask(burn_cpu, 0.05, str(marker))]
        )

    return Starlette(routes=[Route("/render", render)], lifespan=offload.lifespan(config))


@pytest.mark.parametrize("executor", ["process", "dask"])
def test_moving_from_processes_to_dask_is_a_config_change(
    executor: str, cluster: Cluster, tmp_path: Path
) -> None:
    environ = {
        "OFFLOAD_EXECUTOR": executor,
        "OFFLOAD_DASK_ADDRESS": cluster.address,
        "OFFLOAD_PROCESS_WORKERS": "1",
    }
    reports: list[TaskReport] = []
    config = OffloadConfig.from_env(environ).replace(on_report=reports.append)
    marker = tmp_path / "rendered"
    with serve(render_app(config, marker)) as url:
        assert httpx.get(f"{url}/render", timeout=30).text == "accepted"
        wait_until(lambda: reports, "the task is reported")
    assert [(r.executor, r.status) for r in reports] == [(executor, "succeeded")]
    assert marker.exists()


def test_the_dask_executor_needs_an_address() -> None:
    assert "dask" in executor_names()
    with pytest.raises(ConfigError, match="set OFFLOAD_DASK_ADDRESS or OffloadConfig"):
        BackgroundTasks(executor="dask").add_task(process_tasks.add, 1, 2)
    assert OffloadConfig.from_env({"OFFLOAD_DASK_ADDRESS": "tcp://10.0.0.5:8786"}).dask_address
    for bad in ["", "scheduler", "tcp://host :8786", 8786]:
        with pytest.raises(ConfigError, match="dask_address must be a scheduler address"):
            OffloadConfig(dask_address=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a distributed.Client or a scheduler address"):
        DaskExecutor(8786)  # type: ignore[arg-type]


async def test_options_go_to_the_client_made_from_an_address_only(cluster: Cluster) -> None:
    async with DaskExecutor(cluster.address, name="offload-test") as executor:
        assert await call(executor, process_tasks.add, 1, 2) == 3
    given = await anyio.to_thread.run_sync(partial(Client, cluster.address, set_as_default=False))
    try:
        with pytest.raises(TypeError, match=r"got \['timeout'\] with a client"):
            DaskExecutor(given, timeout=5)
    finally:
        await anyio.to_thread.run_sync(given.close)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # Dask's asynchronous mode needs it
async def test_an_asynchronous_client_is_refused(cluster: Cluster, anyio_backend: str) -> None:
    client = await Client(  # type: ignore[no-untyped-call]
        cluster.address, asynchronous=True, set_as_default=False
    )
    try:
        with pytest.raises(TypeError, match="needs a synchronous distributed.Client"):
            DaskExecutor(client)
    finally:
        await client.close()


def test_offload_imports_dask_only_for_the_dask_executor() -> None:
    script = """
        import sys
        import offload
        assert not {"dask", "distributed"} & set(sys.modules), "import offload imported dask"
        sys.modules["distributed"] = None  # as if offload[dask] were not installed
        offload.configure(offload.OffloadConfig(dask_address="tcp://127.0.0.1:8786"))
        try:
            offload.BackgroundTasks(executor="dask").add_task(print)
        except ImportError as exc:
            print(exc)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Install offload's 'dask' extra: pip install \"offload[dask]\"" in result.stdout


async def test_progress_from_a_dask_worker_reaches_the_server_while_it_runs(
    cluster: Cluster, tmp_path: Path
) -> None:
    go_on = tmp_path / "go on"  # the workers share this machine's files
    config = OffloadConfig(executor="dask", dask_address=cluster.address)
    async with Runtime(config), anyio.create_task_group() as group:
        tasks = BackgroundTasks()
        task = tasks.add_task(process_tasks.report_progress_then_wait, str(go_on))
        group.start_soon(tasks)

        def progress() -> object:
            status = offload.status(task.id)
            return None if status is None else status.progress

        try:
            with anyio.fail_after(30):
                await await_until(progress)
            assert progress() == offload.Progress(5, 7, "halfway")
            assert offload.status(task.id).state == "running"  # type: ignore[union-attr]
        finally:
            go_on.touch()
        # The last progress may come before or after the result (Dask carries them apart):
        # it lands either way.
        with anyio.fail_after(30):
            await await_until(lambda: offload.status(task.id).state == "succeeded")  # type: ignore[union-attr]
            await await_until(lambda: progress() == offload.Progress(7, 7, "done"))


async def test_a_dask_task_runs_in_its_span_on_the_worker(cluster: Cluster) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import offload.tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    offload.tracing.install(provider)
    config = OffloadConfig(executor="dask", dask_address=cluster.address)
    async with Runtime(config):
        tasks = BackgroundTasks()
        task = tasks.add_task(process_tasks.current_trace_ids)
        await tasks()
        on_worker = offload.status(task.id).result  # type: ignore[union-attr]
    (span,) = exporter.get_finished_spans()
    assert on_worker == (span.context.trace_id, span.context.span_id)
