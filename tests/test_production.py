"""Production shapes: real servers on 127.0.0.1, run as subprocesses, and what they leave.

The guarantees under test are those of DESIGN.md, "Lifecycle guarantees of the processes offload
starts" (issue 11): the worker processes, the fork server and the resource tracker never outlive
the server, however it ends, and are gone within 2 seconds; no ``pymp-*`` directory is left in the
temp directory; a timeout stops a process task's whole tree; an app that never uses the process
executor works under daemonic server workers, and one that does gets a message naming the fix.

How what is left is counted: each server starts in a session of its own
(``start_new_session=True``), so every process it starts (its own workers, offload's fork server,
worker processes and resource tracker, the tasks' children) has the server's pid as its session
id, even once reparented to PID 1. After the server has ended, a process of that session that is
not a zombie (PID 1 of a container may never reap them) is a leftover; so is any descendant seen
before the stop that is still alive, in case one left the session. Whatever a test started is
killed when it ends, passed or failed.

The apps and task functions live in ``tests/production_apps/``, importable by name from the
servers' worker processes (``tests/`` is their working directory and on ``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

TESTS = Path(__file__).parent

#: How long the guarantees give what offload started to go once the server has ended.
GONE_WITHIN = 2.0

#: Bounds of this suite's waits, generous: a slow CI machine makes them slow, never wrong.
START_TIMEOUT = 30.0
END_TIMEOUT = 30.0

APPS = {
    "lifespan": "production_apps.apps:with_lifespan",
    "default-runtime": "production_apps.apps:without_lifespan",
}
NO_PROCESS_APP = "production_apps.apps:no_process"

# What the first process task's failure says under daemonic workers: the cause, then the fix
# (hypercorn's `daemon = false` in its config, or `-w 0`), in whatever words.
DAEMONIC_CAUSE = re.compile(r"daemon", re.IGNORECASE)
DAEMONIC_FIX = re.compile(
    r"-w 0|--workers 0|workers\s*=\s*0|daemon\s*=\s*false|daemon\W+(to|as)\s+false",
    re.IGNORECASE,
)


# --- processes, from /proc ------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """One process, as ``/proc/<pid>/stat`` shows it."""

    pid: int
    ppid: int
    session: int
    state: str  # "Z": a zombie, dead but not reaped
    start_time: int  # clock ticks after boot: tells a process from a later one with its pid

    @property
    def alive(self) -> bool:
        return self.state != "Z"


def read_proc(pid: int) -> Proc | None:
    """The process ``pid``, or ``None`` if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2, the command name, is in parentheses and may hold anything: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state, ppid, pgrp, session, ..., starttime (field 22).
    return Proc(
        pid=pid,
        ppid=int(fields[1]),
        session=int(fields[3]),
        state=fields[0],
        start_time=int(fields[19]),
    )


def all_processes() -> list[Proc]:
    procs = (read_proc(int(name)) for name in os.listdir("/proc") if name.isdigit())
    return [proc for proc in procs if proc is not None]


def is_alive(proc: Proc) -> bool:
    """Whether ``proc`` (this very process, not a later one with its pid) is alive."""
    now = read_proc(proc.pid)
    return now is not None and now.start_time == proc.start_time and now.alive


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds have passed; return it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return condition()
        time.sleep(0.05)
    return True


# --- a process started in a session of its own ----------------------------------------------------


class Session:
    """A command run in a session of its own, in a directory of its own under ``tmp_path``:
    its own ``TMPDIR``, its output in a log file, the files its tasks mark.

    ``{fd}`` in the arguments becomes the file descriptor of a socket listening on a free port
    of 127.0.0.1, passed to the command (no race for the port); :attr:`url` is its address.
    """

    def __init__(
        self,
        args: Sequence[str],
        directory: Path,
        *,
        stdin: int | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
    ) -> None:
        self.dir = directory
        self.tmpdir = directory / "tmp"
        self.marks = directory / "marks"
        self.log = directory / "output.log"
        self.tmpdir.mkdir(parents=True)
        self.marks.mkdir()
        self.known: dict[int, Proc] = {}  # descendants seen so far
        extra = env or {}
        env = {key: value for key, value in os.environ.items() if not key.startswith("OFFLOAD_")}
        env |= {
            "TMPDIR": str(self.tmpdir),
            "PYTHONPATH": os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])]),
            "OFFLOAD_PROCESS_WORKERS": "2",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
        with contextlib.ExitStack() as stack:
            listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            fd = str(listener.fileno())
            log = stack.enter_context(self.log.open("wb"))
            self.process = subprocess.Popen(
                [sys.executable, "-m", *(arg.replace("{fd}", fd) for arg in args)],
                cwd=TESTS,
                env=env,
                stdin=stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
                start_new_session=True,
            )
        self.pid = self.process.pid

    # What is running.

    def members(self) -> list[Proc]:
        """The live processes of the session, and live descendants seen before, but the
        command's own process."""
        procs = [
            proc
            for proc in all_processes()
            if proc.alive and proc.session == self.pid and proc.pid != self.pid
        ]
        seen = {proc.pid for proc in procs}
        return procs + [
            proc for proc in self.known.values() if proc.pid not in seen and is_alive(proc)
        ]

    def remember(self) -> list[Proc]:
        """Record and return the command's live descendants (its session, its process tree)."""
        procs = all_processes()
        children: dict[int, list[Proc]] = {}
        for proc in procs:
            children.setdefault(proc.ppid, []).append(proc)
        tree, stack = [], list(children.get(self.pid, []))
        while stack:
            proc = stack.pop()
            tree.append(proc)
            stack.extend(children.get(proc.pid, []))
        for proc in [*tree, *(p for p in procs if p.session == self.pid and p.pid != self.pid)]:
            if proc.alive:
                self.known[proc.pid] = proc
        return self.members()

    def leftovers(self, within: float = GONE_WITHIN) -> list[Proc]:
        """What is still alive ``within`` seconds from now (sooner if nothing is)."""
        wait_until(lambda: not self.members(), within)
        return self.members()

    def describe(self, procs: Sequence[Proc]) -> str:
        lines = [f"  pid {p.pid} ppid {p.ppid} state {p.state}: {cmdline(p.pid)}" for p in procs]
        return "\n".join(lines) or "  (none)"

    def output(self, last: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-last:]

    # Stopping it.

    def signal(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def wait_ended(self, timeout: float = END_TIMEOUT) -> int:
        """Wait until the command's own process has ended and return its exit code."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{self.pid} did not end within {timeout}s; its output:\n{self.output()}",
                pytrace=False,
            )

    def kill_all(self) -> None:
        """Kill the command and every process of its session, and reap the command."""
        if self.process.poll() is None or self.members():
            # While a process of its session lives, the server's pid cannot be reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (procs := self.members()) and time.monotonic() < deadline:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.process.stdin is not None:
            self.process.stdin.close()

    def pymp_dirs(self, within: float = GONE_WITHIN) -> list[str]:
        """The ``pymp-*`` directories left in the command's ``TMPDIR`` ``within`` seconds from
        now (sooner if there are none)."""
        wait_until(lambda: not list(self.tmpdir.glob("pymp-*")), within)
        return sorted(path.name for path in self.tmpdir.glob("pymp-*"))


class Server(Session):
    """A server in a session of its own, answering HTTP."""

    def __init__(
        self, args: Sequence[str], directory: Path, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(args, directory, env=env)
        # A connection per request, as from many clients: a kept-alive one would stay with a
        # worker that is being recycled.
        self.client = httpx.Client(
            base_url=self.url,
            timeout=30,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._marks = 0

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(
                    f"the server exited with {self.process.returncode} before it answered; "
                    f"its output:\n{self.output()}",
                    pytrace=False,
                )
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/ping", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def request_work(self, seconds: float = 0.0) -> tuple[httpx.Response, Path]:
        """Ask for a background task that writes its pid to a new file (returned) and then
        sleeps ``seconds``."""
        self._marks += 1
        mark = self.marks / f"task-{self._marks}"
        response = self.client.get("/work", params={"mark": str(mark), "seconds": seconds})
        return response, mark

    def work(self, seconds: float = 0.0) -> int:
        """Run a task to its start: return the pid of the server process that answered."""
        response, mark = self.request_work(seconds)
        assert response.status_code == 200, f"{response.status_code}: {response.text}"
        if not wait_until(mark.exists, 30):
            pytest.fail(f"the task did not run within 30s; the server's output:\n{self.output()}")
        return int(response.json()["pid"])

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def serving(
    args: Sequence[str], tmp_path: Path, name: str = "server", env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start a server, wait until it answers, and kill all it started on exit."""
    server = Server(args, tmp_path / name, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()
        server.kill_all()


def uvicorn(app: str, *options: str) -> list[str]:
    return ["uvicorn", "--fd", "{fd}", *options, app]


def hypercorn(app: str, worker_class: str, *options: str) -> list[str]:
    return ["hypercorn", "-k", worker_class, "--bind", "fd://{fd}", *options, app]


def assert_offload_started(server: Server, server_workers: int = 0) -> None:
    """Check that offload's processes exist: else the count after the stop proves nothing.

    At least a fork server, a worker and the resource tracker, beside the server's own
    ``server_workers``.
    """
    running = server.remember()
    assert len(running) >= 3 + server_workers, (
        f"expected the fork server, workers and resource tracker before the stop, "
        f"found:\n{server.describe(running)}"
    )


def assert_nothing_left(server: Server, shape: str) -> None:
    left = server.leftovers()
    assert not left, (
        f"{len(left)} processes of {shape} alive {GONE_WITHIN}s after it ended "
        f"(exit code {server.process.returncode}):\n"
        f"{server.describe(left)}\nthe server's output:\n{server.output()}"
    )


def stop(server: Server, how: str) -> None:
    """Stop the server: ``sigterm``, ``sigkill`` (the OOM killer), or ``sigint-twice``
    (uvicorn's forced exit: a second Ctrl-C while the first waits for running tasks)."""
    if how == "sigint-twice":
        server.signal(signal.SIGINT)
        wait_until(lambda: "to force quit" in server.output(), 10)
        server.signal(signal.SIGINT)
    else:
        server.signal({"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}[how])
    server.wait_ended()


# --- uvicorn --------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["sigterm", "sigkill", "sigint-twice"])
@pytest.mark.parametrize("app", APPS)
def test_uvicorn_leaves_no_process(app: str, how: str, tmp_path: Path) -> None:
    with serving(uvicorn(APPS[app]), tmp_path) as server:
        # Ctrl-C twice only forces anything while a task still runs.
        server.work(seconds=30 if how == "sigint-twice" else 0)
        assert_offload_started(server)
        stop(server, how)
        assert_nothing_left(server, f"uvicorn ({app}, {how})")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
@pytest.mark.parametrize("app", APPS)
def test_uvicorn_leaves_no_pymp_directory(app: str, how: str, tmp_path: Path) -> None:
    with serving(uvicorn(APPS[app]), tmp_path) as server:
        server.work()
        assert_offload_started(server)
        stop(server, how)
        ended = time.monotonic()
        left = server.pymp_dirs(within=GONE_WITHIN)
        waited = time.monotonic() - ended
        assert left == [], f"left in its TMPDIR {waited:.1f}s after the server ended ({how})"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("app", APPS)
def test_uvicorn_with_two_workers_leaves_no_process(app: str, tmp_path: Path) -> None:
    with serving(uvicorn(APPS[app], "--workers", "2"), tmp_path) as server:
        for _ in range(4):
            server.work()
        assert_offload_started(server, server_workers=2)
        stop(server, "sigterm")
        assert_nothing_left(server, f"uvicorn --workers 2 ({app})")


# --- gunicorn -------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("app", APPS)
def test_gunicorn_recycling_workers_leaves_no_process(app: str, tmp_path: Path) -> None:
    args = [
        "gunicorn",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-w",
        "1",
        "--max-requests",
        "3",
        "--max-requests-jitter",
        "0",
        "--bind",
        "fd://{fd}",
        APPS[app],
    ]
    with serving(args, tmp_path) as server:
        # uvicorn checks the request limit ten times a second, so a worker may serve a few more.
        served_by = [server.work() for _ in range(10)]
        while len(set(served_by)) < 3 and len(served_by) < 40:
            served_by.append(server.work())
        assert len(set(served_by)) >= 3, f"the worker was not recycled twice: {served_by}"
        assert_offload_started(server, server_workers=1)
        stop(server, "sigterm")
        assert_nothing_left(server, f"gunicorn --max-requests 3 ({app}, recycled)")


# --- hypercorn ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_hypercorn_default_settings_serve_an_app_without_process_tasks(
    worker_class: str, tmp_path: Path
) -> None:
    # By default hypercorn serves from one daemonic worker, which may not start processes.
    with serving(hypercorn(NO_PROCESS_APP, worker_class), tmp_path) as server:
        server.work()  # a thread task
        stop(server, "sigterm")
        assert_nothing_left(server, f"hypercorn -k {worker_class}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_hypercorn_default_settings_name_the_fix_when_a_process_task_fails(
    worker_class: str, tmp_path: Path
) -> None:
    with serving(hypercorn(APPS["lifespan"], worker_class), tmp_path) as server:
        response, mark = server.request_work()
        assert response.status_code == 200, response.text
        wait_until(lambda: DAEMONIC_FIX.search(server.output()) is not None, 15)
        output = server.output(last=20_000)
        assert DAEMONIC_CAUSE.search(output), f"the failure does not name its cause:\n{output}"
        assert DAEMONIC_FIX.search(output), f"the failure does not name the fix:\n{output}"
        assert not mark.exists(), "a process task ran in a daemonic worker"
        stop(server, "sigterm")
        assert_nothing_left(server, f"hypercorn -k {worker_class}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("settings", ["w0", "daemon-false"])
@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_hypercorn_settings_for_processes_leave_no_process(
    worker_class: str, settings: str, tmp_path: Path
) -> None:
    # Note: with -w 0, hypercorn's trio worker installs no SIGTERM handler, so SIGTERM ends it
    # at once, with no cleanup at all: for offload, as a SIGKILL would.
    if settings == "w0":  # served from hypercorn's own process
        options, server_workers = ["-w", "0"], 0
    else:  # `daemon = false` in hypercorn's config: a worker that may start processes
        config = tmp_path / "hypercorn.toml"
        config.write_text("daemon = false\n")
        options, server_workers = ["--config", str(config)], 1
    with serving(hypercorn(APPS["lifespan"], worker_class, *options), tmp_path) as server:
        server.work()
        assert_offload_started(server, server_workers)
        stop(server, "sigterm")
        assert_nothing_left(server, f"hypercorn -k {worker_class} ({settings})")


# --- timeouts -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["popen", "multiprocessing"])
def test_a_timeout_stops_the_grandchildren_of_a_process_task(kind: str, tmp_path: Path) -> None:
    directory = tmp_path / "script"
    pid_file, mark, result_file = (directory / name for name in ("grandchild", "mark", "result"))
    script = ["production_apps.timeout_script", kind, str(pid_file), str(mark), str(result_file)]
    session = Session(script, directory, stdin=subprocess.PIPE)
    try:
        if not wait_until(result_file.exists, 30):
            pytest.fail(f"the timed task did not end within 30s:\n{session.output()}")
        result = json.loads(result_file.read_text())
        assert pid_file.exists(), f"the task started no grandchild: {result}\n{session.output()}"
        grandchild = int(pid_file.read_text())

        def grandchild_alive() -> bool:
            proc = read_proc(grandchild)
            return proc is not None and proc.alive and proc.session == session.pid

        gone = wait_until(lambda: not grandchild_alive(), GONE_WITHIN)
        assert session.process.stdin is not None
        session.process.stdin.close()  # the script leaves its runtime and ends
        session.wait_ended()
        left = session.leftovers()
        problems = []
        if result["status"] != "timed_out":
            problems.append(f"its status is {result['status']!r}, not 'timed_out'")
        if result["elapsed"] >= 3:
            problems.append(f"the timeout took {result['elapsed']:.1f}s, not less than 3s")
        if not gone:
            problems.append(
                f"the grandchild {grandchild} ({cmdline(grandchild)}) was still alive "
                f"{GONE_WITHIN}s after the timeout"
            )
        if left:
            problems.append(f"{len(left)} processes outlived the script:\n{session.describe(left)}")
        report = f"the timed task ended {result['status']} after {result['elapsed']:.1f}s"
        assert not problems, "\n".join([report, *problems, "its output:", session.output()])
    finally:
        session.kill_all()
