"""Soak: a real server, thousands of requests, and every background task runs exactly once.

A uvicorn server on 127.0.0.1 (a child process running this file's app with
``offload.lifespan``) gets ``--requests`` requests (5,000 by default) from ``--clients``
clients at once. Each request schedules two tasks, one on the thread executor and one in a
worker process; every other request detaches them. Each task creates a file named after its
request and executor, exclusively, so a task that ran twice fails and is counted.

Then the server is stopped with SIGTERM and it checks, counting outside the server: every
answer was 200; every file exists (each task ran, once); the server reported no failure and
exited cleanly with nothing abandoned. It prints the resident memory (VmRSS) of the server
and of its worker processes after a warm-up and at the end, and fails if the server's grew
by more than ``--max-growth`` MB. Linux only (it reads ``/proc``).

Run with ``make soak`` or ``.venv/bin/python benchmarks/soak.py [--requests N]``; a small
run is part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import offload
from offload import BackgroundTask, TaskReport
from offload.starlette import PlainTextResponse

WARM_UP = 0.1  # the share of requests sent before the first memory reading


# The server side


def mark(directory: str, name: str) -> None:
    """Create the file ``name`` in ``directory``; fail if it exists (the task ran twice)."""
    os.close(os.open(os.path.join(directory, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))


reports: collections.Counter[str] = collections.Counter()


def count(report: TaskReport) -> None:
    reports[report.status] += 1


#: Few, so that a soak ends far past them: the runtime must forget the oldest.
KEEP_STATUSES = 100


def make_app(directory: str, workers: int) -> Starlette:
    async def schedule(request: Request) -> PlainTextResponse:
        n = int(request.query_params["n"])
        return PlainTextResponse(
            "ok",
            backgrounds=[
                BackgroundTask(mark, directory, f"{n}-thread").set(executor="thread"),
                BackgroundTask(mark, directory, f"{n}-process").set(executor="process"),
            ],
            detach=n % 2 == 1,
        )

    async def stats(request: Request) -> JSONResponse:
        workers = [process.pid for process in multiprocessing.active_children()]
        kept = len(offload.statuses())
        return JSONResponse(
            {"reports": reports, "pid": os.getpid(), "workers": workers, "statuses": kept}
        )

    @asynccontextmanager
    async def announce_shutdown(app: Starlette) -> AsyncIterator[None]:
        yield
        # Exited after offload's runtime has drained: the shutdown was graceful.
        print("drained", flush=True)

    config = offload.OffloadConfig(
        process_workers=workers, on_report=count, keep_statuses=KEEP_STATUSES
    )
    return Starlette(
        routes=[Route("/", schedule), Route("/stats", stats)],
        lifespan=offload.lifespan(config, announce_shutdown),
    )


def serve(directory: str, workers: int) -> None:
    """Run the app on a free port of 127.0.0.1, print the port, serve until SIGTERM.

    uvicorn shuts down gracefully on SIGTERM, then raises it again: the process ends
    killed by SIGTERM, with ``drained`` printed first.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    config = uvicorn.Config(
        make_app(directory, workers), log_level="warning", lifespan="on", loop="asyncio"
    )
    uvicorn.Server(config).run(sockets=[listener])


# The client side


def rss_mb(pid: int) -> float:
    """Return the resident memory of process ``pid`` in MB, or 0 if it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the server reported at one moment, and its memory then."""

    reports: dict[str, int]
    statuses: int
    server_mb: float
    workers_mb: float
    workers: int

    @classmethod
    def of(cls, stats: dict[str, Any]) -> Snapshot:
        pids: list[int] = stats["workers"]
        return cls(
            dict(stats["reports"]),
            stats["statuses"],
            rss_mb(stats["pid"]),
            sum(rss_mb(pid) for pid in pids),
            len(pids),
        )


async def send(
    url: str, requests: int, clients: int
) -> tuple[collections.Counter[int], Snapshot, float]:
    """Send the requests; return the status codes, a snapshot taken after the warm-up, and
    how long the requests took."""
    statuses: collections.Counter[int] = collections.Counter()
    numbers = iter(range(requests))
    warmed_up = max(1, int(requests * WARM_UP))
    warm: list[Snapshot] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one_client() -> None:
            for n in numbers:  # shared: each number goes to one client
                response = await client.get("/", params={"n": n})
                statuses[response.status_code] += 1
                if n == warmed_up:
                    warm.append(Snapshot.of((await client.get("/stats")).json()))

        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(clients):
                group.start_soon(one_client)
        elapsed = time.perf_counter() - start
    return statuses, warm[0], elapsed


def wait_for_tasks(url: str, expected: int, within: float) -> Snapshot:
    """Wait until every task has reported; return a snapshot taken then."""
    deadline = time.monotonic() + within
    while True:
        snapshot = Snapshot.of(httpx.get(f"{url}/stats", timeout=30).json())
        if sum(snapshot.reports.values()) >= expected or time.monotonic() > deadline:
            return snapshot
        time.sleep(0.05)


def start_server(directory: str, workers: int, log: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, __file__, "--serve", directory, "--workers", str(workers)]
    with log.open("w") as stderr:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert server.stdout is not None
    url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/stats", timeout=5).raise_for_status()
            return server, url
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the soak server did not start:\n{log.read_text()}") from None
            time.sleep(0.05)


def soak(requests: int, clients: int, workers: int, max_growth: float) -> list[str]:
    """Run the soak; print what it measured and return the problems found."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="offload-soak-") as tmp:
        directory, log = Path(tmp, "marks"), Path(tmp, "server.log")
        directory.mkdir()
        server, url = start_server(str(directory), workers, log)
        try:
            statuses, warm, elapsed = anyio.run(send, url, requests, clients)
            end = wait_for_tasks(url, 2 * requests, within=120)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                said, _ = server.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                said, _ = server.communicate()
        names = {path.name for path in directory.iterdir()}
        expected = {f"{n}-{kind}" for n in range(requests) for kind in ("thread", "process")}
        server_log = log.read_text()

    detached = requests // 2
    print(
        f"soak: {requests} requests ({detached} detached) from {clients} clients, "
        f"{2 * requests} tasks (thread + process), {workers} worker processes"
    )
    print(f"  requests: {dict(statuses)} in {elapsed:.1f} s ({requests / elapsed:.0f}/s)")
    if set(statuses) != {200}:
        problems.append(f"not every answer was 200: {dict(statuses)}")
    outcomes = end.reports
    missing, unexpected = expected - names, names - expected
    print(f"  tasks: {len(names)} of {len(expected)} ran (one file each); reports: {outcomes}")
    if missing or unexpected:
        problems.append(f"{len(missing)} task(s) never ran, {len(unexpected)} unexpected files")
    if outcomes != {"succeeded": 2 * requests}:
        problems.append(f"not every task succeeded exactly once: {outcomes}")
    print(f"  statuses kept: {end.statuses} (keep_statuses={KEEP_STATUSES})")
    if end.statuses > KEEP_STATUSES:
        problems.append(f"the runtime kept {end.statuses} statuses, past keep_statuses")
    graceful = said.split() == ["drained"] and server.returncode == -signal.SIGTERM
    print(f"  shutdown on SIGTERM: {'graceful' if graceful else 'NOT graceful'}")
    if not graceful:
        problems.append(f"the server did not shut down gracefully (exit {server.returncode})")
    if server_log.strip():
        print("  server log:\n" + server_log)
        problems.append("the server logged warnings or errors")

    print("  memory (VmRSS)      after warm-up    at the end    growth")
    print(f"  server              {warm.server_mb:9.1f} MB  {end.server_mb:9.1f} MB  "
          f"{end.server_mb - warm.server_mb:+7.1f} MB")  # fmt: skip
    print(f"  workers ({warm.workers} -> {end.workers})    {warm.workers_mb:9.1f} MB  "
          f"{end.workers_mb:9.1f} MB  {end.workers_mb - warm.workers_mb:+7.1f} MB")  # fmt: skip
    if end.server_mb - warm.server_mb > max_growth:
        problems.append(f"the server's memory grew by more than {max_growth} MB")
    if end.workers != workers:
        problems.append(f"{end.workers} worker processes at the end, not {workers}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=8, help="requests in flight at once")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--max-growth", type=float, default=25.0, help="MB the server may gain")
    parser.add_argument("--serve", metavar="DIRECTORY", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.workers)
        return 0
    problems = soak(args.requests, args.clients, args.workers, args.max_growth)
    for problem in problems:
        print(f"FAILED: {problem}")
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
