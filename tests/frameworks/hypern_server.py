"""Hypern's own server in a subprocess, on a free port of 127.0.0.1, and what it leaves.

Hypern's server is a main process that forks the process that serves (with Hypern's
``multiprocess``), and kills it with SIGKILL when it gets SIGTERM or SIGINT. Each server here
starts in a session of its own (``start_new_session=True``), so every process it starts
(its serving process, offload's fork server, worker processes and resource tracker) has the
main process's pid as its session id, even once reparented to PID 1: what is left of the
session once the server has stopped is what it leaked.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FRAMEWORKS = Path(__file__).parent

#: How long the guarantees give offload's processes to go once the server has ended.
GONE_WITHIN = 2.0

#: Bounds of the waits, generous: a slow machine makes them slow, never wrong.
START_TIMEOUT = 30.0
WAIT_TIMEOUT = 20.0


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds have passed; return it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return condition()
        time.sleep(0.02)
    return True


def read_mark(path: Path, timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
    """Wait for the mark a task leaves at ``path`` and return what it says."""

    def written() -> bool:
        with contextlib.suppress(OSError, ValueError):
            json.loads(path.read_text())
            return True
        return False

    assert wait_until(written, timeout), f"no mark at {path.name} within {timeout}s"
    mark: dict[str, Any] = json.loads(path.read_text())
    return mark


def session_processes(session: int) -> dict[int, str]:
    """The live processes (not zombies, which PID 1 of a container may never reap) of a
    session, by pid, with their command lines."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        # After the ")" that ends the command name: state, ppid, pgrp, session.
        fields = stat.rpartition(b")")[2].split()
        if int(fields[3]) == session and fields[0] != b"Z":
            found[int(entry)] = command.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
    except OSError:
        return False
    return state != b"Z"


@dataclass
class Server:
    """A Hypern server started by :func:`serve`."""

    url: str
    process: subprocess.Popen[bytes]
    marks: Path
    tmpdir: Path
    log: Path
    #: What was alive in the server's session once it had stopped: filled by :func:`serve`.
    leftovers: dict[int, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str) -> dict[str, Any]:
        """GET ``path`` and return the JSON it answers."""
        response = httpx.get(self.url + path, timeout=WAIT_TIMEOUT)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def reports(self, count: int) -> list[dict[str, Any]]:
        """Wait until the app's ``on_report`` has written ``count`` reports; return them."""
        path = self.marks / "reports.jsonl"

        def lines() -> list[str]:
            with contextlib.suppress(OSError):
                return path.read_text().splitlines()
            return []

        assert wait_until(lambda: len(lines()) >= count), f"reports: {lines()}\n{self.output()}"
        return [json.loads(line) for line in lines()]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def serve(
    code: str,
    directory: Path,
    *,
    path: Sequence[Path] = (FRAMEWORKS,),
    args: Sequence[str] = (),
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[Server]:
    """Run ``python -c code --port PORT *args`` in a session of its own, with ``path`` on
    ``PYTHONPATH``, and yield it once it answers on 127.0.0.1:PORT; on exit, stop it with
    ``stop``, wait for it, and record in ``leftovers`` what is alive of its session
    :data:`GONE_WITHIN` seconds later, then kill that, whether the test passed or not.

    Hypern binds the port itself, so a free one is picked and, should another process
    take it first, the server is started again on another.
    """
    marks, tmpdir, log = directory / "marks", directory / "tmp", directory / "server.log"
    marks.mkdir(parents=True)
    tmpdir.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OFFLOAD_")}
    env |= {
        "PYTHONPATH": os.pathsep.join(map(str, path)),
        "HYPERN_MARKS": str(marks),
        "TMPDIR": str(tmpdir),
        "PYTHONUNBUFFERED": "1",
    }
    for _attempt in range(3):
        port = _free_port()
        with log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-c", code, "--port", str(port), *args],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(f"http://127.0.0.1:{port}", process, marks, tmpdir, log)
        try:
            if _answers(server):
                break
        except BaseException:
            _stop(server, signal.SIGKILL)
            raise
        _stop(server, signal.SIGKILL)
    else:
        raise RuntimeError(f"the Hypern server did not start:\n{log.read_text()[-4000:]}")
    try:
        yield server
    finally:
        _stop(server, stop)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        port: int = listener.getsockname()[1]
        return port


def _answers(server: Server) -> bool:
    """Wait until the server answers HTTP (a 404 will do); ``False`` if its process ended
    first."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(server.url + "/", timeout=1)
            return True
        time.sleep(0.05)
    raise RuntimeError(f"the Hypern server did not answer in {START_TIMEOUT}s:\n{server.output()}")


def _stop(server: Server, stop: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, stop)
    try:
        server.process.wait(WAIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(WAIT_TIMEOUT)
    wait_until(lambda: not session_processes(server.pid), GONE_WITHIN)
    server.leftovers = session_processes(server.pid)
    for pid in server.leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
