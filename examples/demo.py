"""make demo: what offload changes for a real server, each figure measured over several runs.

Starts the shop of ``demo_app.py`` on a real uvicorn server (a subprocess on 127.0.0.1), then
runs one scenario per difference between offload and Starlette's own ``BackgroundTask``
that has a cause, as opposed to noise:

1. CPU-heavy tasks in worker processes: ``/ping`` stays fast;
2. blocking tasks on offload's own thread limiter: sync endpoints still answer;
3. a task that crashes its worker or hangs touches nothing else;
4. one response's tasks on different executors, in order;
5. a task in a worker process followed by its status;
6. durable tasks: the server is killed mid-run, and the next one renders every invoice.

Each figure is measured once per run, and shown as the median and the range (min to max)
over the runs. Two rows are compared only where every run of one is below every run of the other;
otherwise the demo says that the runs overlap. Where offload and Starlette share a mechanism
(offload's inline executor and Starlette's ``async def`` tasks, its thread executor and
Starlette's ``def`` tasks below the thread limit) nothing is compared: any gap is noise.

A scenario is a function that takes the running :class:`Shop` and the :class:`Settings`,
says what it does with :func:`say`, and returns its :class:`Findings`, which
:func:`render` prints; add it, with its title, to ``SCENARIOS``. Its routes go in a section
of their own in ``demo_app.py``.

``--quick`` runs each scenario once or twice with a small load (a few seconds), as the test
suite does; its figures show that the demo works, not what offload is worth.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

APP = Path(__file__).with_name("demo_app.py")
PING_EVERY = 0.010
WIDTH = 100
INDENT = "   "
LABEL_WIDTH = 52
BAR_WIDTH = 24

#: Order numbers, unique across the scenarios, so each task writes a file of its own.
ORDER_NUMBERS = itertools.count(1)


@dataclass(frozen=True)
class Settings:
    """How much each scenario does (see :data:`FULL` and :data:`QUICK`)."""

    cpu_runs: int
    cpu_orders: int  # placed one after another in each run
    cpu_seconds: float  # of pure-Python work per invoice
    blocking_runs: int
    blocking_tasks: int  # at once, in each run: more than anyio's 40 default threads
    blocking_seconds: float  # each task blocks its thread this long
    fault_runs: int
    fault_timeout: float  # of the task that hangs
    fault_others: int  # ordinary tasks beside the crash and the hang, in each run
    mixed_orders: int
    followed: int  # invoices whose progress is drawn
    followed_seconds: float  # of CPU work per followed invoice
    durable_runs: int
    durable_orders: int  # placed before each kill
    durable_seconds: float  # of CPU work per durable invoice


FULL = Settings(
    cpu_runs=9,
    cpu_orders=4,
    cpu_seconds=0.1,
    blocking_runs=3,
    blocking_tasks=50,
    blocking_seconds=0.5,
    fault_runs=4,
    fault_timeout=0.5,
    fault_others=4,
    mixed_orders=5,
    followed=3,
    followed_seconds=0.5,
    durable_runs=2,
    durable_orders=12,
    durable_seconds=0.3,
)
QUICK = Settings(
    cpu_runs=2,
    cpu_orders=2,
    cpu_seconds=0.03,
    blocking_runs=1,
    blocking_tasks=45,
    blocking_seconds=0.3,
    fault_runs=1,
    fault_timeout=0.3,
    fault_others=2,
    mixed_orders=2,
    followed=3,
    followed_seconds=0.1,
    durable_runs=1,
    durable_orders=6,
    durable_seconds=0.2,
)


def new_orders(count: int) -> list[int]:
    """Return ``count`` order numbers never used before."""
    return list(itertools.islice(ORDER_NUMBERS, count))


# The shop ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shop:
    """A running ``demo_app.py``: where it answers, where its tasks write, its process."""

    url: str
    outbox: Path
    process: subprocess.Popen[str]

    async def wait_for(self, names: Iterable[str]) -> None:
        """Wait until every file of ``names`` is in the outbox: the tasks that write them
        have ended. Polled: they end in other processes, or threads, of another program."""
        expected = set(names)
        with anyio.fail_after(60):
            while True:
                if expected.issubset(os.listdir(self.outbox)):
                    return
                await anyio.sleep(0.01)


@contextlib.contextmanager
def shop(workdir: Path, name: str = "shop", journal: Path | None = None) -> Iterator[Shop]:
    """Run ``demo_app.py`` on uvicorn in a subprocess; yield it once it answers, and stop it
    gracefully (as Ctrl-C does) on exit, whatever happened.

    Its tasks write into ``workdir/outbox``, and journal their durable ones in ``journal``;
    its log (offload logs every task that fails, and scenario 3 fails some on purpose) goes
    to ``workdir/<name>.log``, out of the demo's way.
    """
    outbox = workdir / "outbox"
    outbox.mkdir(exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("w") as stderr:
        journaled = [] if journal is None else ["--journal", str(journal)]
        process = subprocess.Popen(
            [sys.executable, str(APP), "--port", "0", "--outbox", str(outbox), *journaled],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            # Its own session: Ctrl-C in the terminal reaches this script only, which then
            # stops the server (and so its worker processes) in order, below.
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "<url> outbox <folder>", once the port is bound
        if not line:
            raise RuntimeError(
                f"the demo app exited with code {process.wait()}:\n{log.read_text()}"
            )
        url = line.split()[0]
        deadline = time.monotonic() + 60
        while True:  # it answers once its lifespan has started the worker processes
            try:
                httpx.get(f"{url}/ping").raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the demo app did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield Shop(url, outbox, process)
    finally:
        if process.poll() is None:
            if sys.platform == "win32":
                process.terminate()
            else:
                process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


# Measuring --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pinging(url: str) -> AsyncIterator[list[float]]:
    """Ping the server every 10 ms while the block runs; yield the list of latencies (in
    seconds), complete once the block has exited and the last ping has been answered.

    On a fixed schedule, without waiting for the last answer: a stalled server keeps getting
    pings, as it keeps getting users, and each one counts how long it waited.
    """
    latencies: list[float] = []
    stop = anyio.Event()

    async def ping(client: httpx.AsyncClient) -> None:
        start = time.perf_counter()
        (await client.get("/ping")).raise_for_status()
        latencies.append(time.perf_counter() - start)

    async def every(client: httpx.AsyncClient) -> None:
        async with anyio.create_task_group() as in_flight:
            next_at = time.perf_counter()
            while not stop.is_set():
                in_flight.start_soon(ping, client)
                next_at += PING_EVERY
                await anyio.sleep(max(0.0, next_at - time.perf_counter()))

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await client.get("/ping")  # connected before the clock starts
        async with anyio.create_task_group() as group:
            group.start_soon(every, client)
            try:
                yield latencies
            finally:
                stop.set()


def percentile(values: Sequence[float], percent: int) -> float:
    """Return the ``percent``-th percentile of ``values`` (at least one)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


async def statuses_once_ended(client: httpx.AsyncClient, ids: Sequence[str]) -> list[Any]:
    """Poll ``GET /tasks/{id}`` until every task of ``ids`` has ended; return their
    statuses (JSON), in the order of ``ids``."""
    with anyio.fail_after(60):
        while True:
            found = []
            for id_ in ids:
                answer = await client.get(f"/tasks/{id_}")
                # 404 until the run that holds the task starts, just after the response.
                found.append(
                    None if answer.status_code == 404 else answer.raise_for_status().json()
                )
            if all(status and status["state"] not in ("pending", "running") for status in found):
                return found
            await anyio.sleep(0.02)


def took(status: Any) -> float:
    """How long a task ran, from its status."""
    return float(status["ended_at"] - status["started_at"])


# Printing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One figure, measured once per run (in seconds), and what it was measured on."""

    label: str
    samples: Sequence[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass(frozen=True)
class Findings:
    """What a scenario found: a table of rows (``figure`` says what their samples are),
    facts (counts, comparisons), and why the difference is real."""

    figure: str
    rows: Sequence[Row]
    facts: Sequence[str]
    why: str


def say(text: str) -> None:
    """Print ``text`` under the scenario's title, wrapped."""
    tick()
    print(textwrap.fill(text, WIDTH, initial_indent=INDENT, subsequent_indent=INDENT), flush=True)


def tick(text: str = "") -> None:
    """Show what is running, in place, on a terminal (nothing in a log); ``""`` clears it."""
    if sys.stdout.isatty():
        print(f"\r\x1b[K{INDENT}{text}" if text else "\r\x1b[K", end="", flush=True)


def duration(seconds: float) -> str:
    """``3.1 ms``, ``412 ms``, ``1.52 s``."""
    if seconds < 0.1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def render(findings: Findings) -> str:
    """The scenario's table (median, then min to max), its facts, and why they are real."""
    tick()
    lines = []
    if findings.rows:
        count = len(findings.rows[0].samples)
        runs = f"{count} run" if count == 1 else f"{count} runs"
        lines.append(f"{INDENT}{findings.figure:<{LABEL_WIDTH}}{'median':>10}   min to max, {runs}")
        for row in findings.rows:
            low, high = duration(min(row.samples)), duration(max(row.samples))
            lines.append(
                f"{INDENT}{row.label:<{LABEL_WIDTH}}{duration(row.median):>10}   {low} to {high}"
            )
    lines.extend(
        textwrap.fill(fact, WIDTH, initial_indent=f"{INDENT}- ", subsequent_indent=INDENT + "  ")
        for fact in findings.facts
    )
    lines.append(
        textwrap.fill(
            findings.why, WIDTH, initial_indent=f"{INDENT}Why: ", subsequent_indent=INDENT
        )
    )
    return "\n".join(lines)


def compare(better: Row, worse: Row, figure: str) -> str:
    """Say how much lower ``better`` is than ``worse``, only if no run of the one reaches
    any run of the other.

    The factor is the least one the runs support, the worst run of ``better`` against the
    best of ``worse``, rounded down to one significant digit: a ratio of medians would move
    with a wide row's spread from one demo to the next.
    """
    if max(better.samples) >= min(worse.samples):
        return f"{better.label} against {worse.label}: the runs overlap; no difference is claimed."
    factor = min(worse.samples) / max(better.samples)
    step = 10 ** math.floor(math.log10(factor)) if factor >= 10 else 0.1
    shown = f"{math.floor(factor / step) * step:.{0 if factor >= 10 else 1}f}"
    return (
        f"{better.label}: {figure} at least {shown}x lower than {worse.label} "
        "(its worst run against the other's best)."
    )


# 1. CPU-heavy tasks -----------------------------------------------------------------------

CPU_VIAS = {
    "starlette-async": "Starlette, async def task (event loop)",
    "starlette": "Starlette, def task (anyio's threads)",
    "process": 'offload, executor="process"',
}


async def cpu_run(shop: Shop, via: str, settings: Settings) -> list[float]:
    """Place the orders while pinging; return the pings' latencies once every invoice is done."""
    orders = new_orders(settings.cpu_orders)
    params: dict[str, str | float] = {"via": via, "cpu": settings.cpu_seconds}
    async with httpx.AsyncClient(base_url=shop.url, timeout=60) as client:
        await client.get("/ping")  # connected before the clock starts
        async with pinging(shop.url) as pings:
            for order in orders:
                (await client.post(f"/cpu/{order}", params=params)).raise_for_status()
            await shop.wait_for(f"invoice-{order}.txt" for order in orders)
    return pings


def cpu_heavy(shop: Shop, settings: Settings) -> Findings:
    """Scenario 1: CPU-heavy tasks on the loop, in threads, in worker processes; /ping meanwhile."""
    say(
        f"Each run places {settings.cpu_orders} orders one after another; each order's "
        f"background task renders an invoice (~{settings.cpu_seconds * 1e3:.0f} ms of "
        f"pure-Python CPU work) while another client pings the server every "
        f"{PING_EVERY * 1e3:.0f} ms. The rows take turns, run by run, so the machine's own "
        "noise falls on all of them alike."
    )
    runs: dict[str, list[list[float]]] = {via: [] for via in CPU_VIAS}
    for run in range(1, settings.cpu_runs + 1):
        for via, label in CPU_VIAS.items():
            tick(f"run {run}/{settings.cpu_runs}: {label}")
            runs[via].append(anyio.run(cpu_run, shop, via, settings))
    # The median of each run is the figure: a run's tail swings with the machine's own load.
    rows = [
        Row(label, [statistics.median(pings) for pings in runs[via]])
        for via, label in CPU_VIAS.items()
    ]
    tails = ", ".join(
        f"{label} {duration(percentile([p for pings in runs[via] for p in pings], 95))}"
        for via, label in CPU_VIAS.items()
    )
    return Findings(
        figure="/ping p50 of each run",
        rows=rows,
        facts=[
            *(compare(rows[-1], row, "/ping p50") for row in rows[:-1]),
            f"p95 of every ping of every run (the tail): {tails}.",
        ],
        why=(
            "an async def task runs on the event loop and holds it for the whole invoice: "
            "every request waits for it. A def task runs in a thread, but pure-Python work "
            "holds the GIL, which the server needs for every request, and hands it over only "
            "every 5 ms (sys.getswitchinterval()), to each thread in turn. A worker process has "
            "an interpreter and a GIL of its own, so the server's process is left with nothing "
            "to do but serve. (offload's inline and thread executors are those same two "
            "mechanisms and would measure the same as Starlette: they are not shown.)"
        ),
    )


# 2. Blocking tasks and sync endpoints -----------------------------------------------------

BLOCKING_VIAS = {
    "starlette": "Starlette, def task (anyio's threads)",
    "thread": 'offload, executor="thread"',
}


async def blocking_run(shop: Shop, via: str, settings: Settings) -> float:
    """Place the orders at once; once all are answered, return how long GET /stock took."""
    orders = new_orders(settings.blocking_tasks)
    params: dict[str, str | float] = {"via": via, "seconds": settings.blocking_seconds}

    async def place(client: httpx.AsyncClient, order: int) -> None:
        (await client.post(f"/blocking/{order}", params=params)).raise_for_status()

    async with (
        httpx.AsyncClient(base_url=shop.url, timeout=60) as client,
        httpx.AsyncClient(base_url=shop.url, timeout=60) as customer,
    ):
        await customer.get("/ping")  # connected before the clock starts
        async with anyio.create_task_group() as group:
            for order in orders:
                group.start_soon(place, client, order)
        start = time.perf_counter()
        (await customer.get("/stock")).raise_for_status()
        waited = time.perf_counter() - start
        await shop.wait_for(f"blocked-{order}.txt" for order in orders)
    return waited


def blocking_tasks(shop: Shop, settings: Settings) -> Findings:
    """Scenario 2: more blocking tasks than anyio's default threads; a sync endpoint meanwhile."""
    say(
        f"Each run places {settings.blocking_tasks} orders at once; each order's background "
        f"task blocks its thread for {settings.blocking_seconds * 1e3:.0f} ms (a sync mail "
        "client, a sync database driver). Once every order has been answered, a customer "
        "asks a sync (def) endpoint, GET /stock."
    )
    samples: dict[str, list[float]] = {via: [] for via in BLOCKING_VIAS}
    for run in range(1, settings.blocking_runs + 1):
        for via, label in BLOCKING_VIAS.items():
            tick(f"run {run}/{settings.blocking_runs}: {label}")
            samples[via].append(anyio.run(blocking_run, shop, via, settings))
    rows = [Row(label, samples[via]) for via, label in BLOCKING_VIAS.items()]
    return Findings(
        figure="GET /stock answered in",
        rows=rows,
        facts=[compare(rows[1], rows[0], "GET /stock")],
        why=(
            "Starlette runs a def background task with anyio.to_thread.run_sync under anyio's "
            "default limiter: 40 tokens, shared with every def endpoint (and sync dependency, "
            "and file response). The blocked tasks hold all 40, so GET /stock queues behind "
            "them until they end. offload's thread executor draws on a limiter of its own "
            "(thread_limit, 40 by default): its tasks wait for each other, never the endpoints "
            "for them. With fewer blocked tasks than tokens both are the same mechanism and "
            "measure the same, so that is not shown."
        ),
    )


# 3. Crashes and hangs ---------------------------------------------------------------------


@dataclass(frozen=True)
class FaultRun:
    """The statuses of one run's tasks (JSON), and the pings answered meanwhile."""

    crashed: Any
    hung: Any
    others: list[Any]
    pings: list[float]


async def fault_run(shop: Shop, settings: Settings) -> FaultRun:
    """Send a crash, a hang and ordinary tasks to the process executor while pinging."""
    faults = [("crash", 10.0), ("hang", settings.fault_timeout)]
    faults += [("none", 10.0)] * settings.fault_others
    async with (
        httpx.AsyncClient(base_url=shop.url, timeout=60) as client,
        pinging(shop.url) as pings,
    ):
        ids: list[str] = []
        for (fault, timeout), order in zip(faults, new_orders(len(faults)), strict=True):
            params: dict[str, str | float] = {"fault": fault, "via": "process", "timeout": timeout}
            answer = await client.post(f"/risky/{order}", params=params)
            ids.extend(answer.raise_for_status().json()["ids"])
        statuses = await statuses_once_ended(client, ids)
    return FaultRun(statuses[0], statuses[1], statuses[2:], pings)


def starlette_crash(workdir: Path) -> str:
    """Send the same crash to Starlette's BackgroundTask, on a server of its own; say what
    became of that server."""
    with shop(workdir, "starlette-crash") as other:
        (order,) = new_orders(1)
        params = {"fault": "crash", "via": "starlette"}
        httpx.post(f"{other.url}/risky/{order}", params=params).raise_for_status()
        try:
            code = other.process.wait(10)
        except subprocess.TimeoutExpired:
            return "Starlette BackgroundTask, the same crash: the server was still up 10 s later."
        try:
            httpx.get(f"{other.url}/ping")
            after = "answered"
        except httpx.TransportError:
            after = "connection refused"
    return (
        "Starlette BackgroundTask, the same crash, on a server of its own: the server itself "
        f"exited (code {code}), with every request it was serving; /ping after it: {after}."
    )


def crashes_and_hangs(shop: Shop, settings: Settings) -> Findings:
    """Scenario 3: a crash and a hang beside ordinary tasks; then the crash under Starlette."""
    say(
        "Each run sends three kinds of task to the process executor, one order each: one "
        "that crashes its worker (os._exit), one that hangs (with a timeout of "
        f"{settings.fault_timeout * 1e3:.0f} ms), and {settings.fault_others} ordinary "
        "invoices, while another client pings the server every "
        f"{PING_EVERY * 1e3:.0f} ms. Then the same crash under Starlette's BackgroundTask."
    )
    runs = []
    for run in range(1, settings.fault_runs + 1):
        tick(f"run {run}/{settings.fault_runs}")
        runs.append(anyio.run(fault_run, shop, settings))
    total = len(runs)
    crashed = [run.crashed for run in runs if run.crashed["state"] == "failed"]
    hung = [run.hung for run in runs if run.hung["state"] == "timed_out"]
    others = [status for run in runs for status in run.others]
    succeeded = sum(status["state"] == "succeeded" for status in others)
    pings = sum(len(run.pings) for run in runs)
    error = crashed[0]["error"] if crashed else "nothing"
    tick("Starlette, the same crash")
    return Findings(
        figure="in each run",
        rows=[
            Row("hung task: stopped by its timeout after", [took(run.hung) for run in runs]),
            Row("/ping p95 meanwhile", [percentile(run.pings, 95) for run in runs]),
        ],
        facts=[
            f"crashing task: failed in {len(crashed)}/{total} runs, with {error}",
            f"hung task: timed_out in {len(hung)}/{total} runs; its worker was killed and replaced",
            f"ordinary invoices beside them: {succeeded}/{len(others)} succeeded; the server "
            f"answered all {pings} pings",
            starlette_crash(shop.outbox.parent),
        ],
        why=(
            "offload runs each process task in a worker process: a worker that dies fails "
            "only its own task (WorkerCrashed), and a task past its timeout has its worker "
            "killed, so it really stops; either way a new worker takes its place. Starlette "
            "runs the task in the server's own process: os._exit, a segfault in a C "
            "extension or the OOM killer ends the server; and a hung thread cannot be stopped "
            "from outside, so it holds one of the 40 shared threads until the server exits."
        ),
    )


# 4. Per-task executors --------------------------------------------------------------------


async def mixed_run(shop: Shop, settings: Settings) -> list[tuple[int, list[Any]]]:
    """Place the orders one by one, each once the last one's tasks have ended (so that what
    each task took is its own work, not a wait for a worker); return each one's server pid
    and its tasks' statuses."""
    responses: list[tuple[int, list[Any]]] = []
    async with httpx.AsyncClient(base_url=shop.url, timeout=60) as client:
        for order in new_orders(settings.mixed_orders):
            body = (await client.post(f"/mixed/{order}")).raise_for_status().json()
            responses.append((body["pid"], await statuses_once_ended(client, body["ids"])))
    return responses


def ran_in(server_pid: int, status: Any) -> str:
    """Where a task ran, from what it returned: the process and thread it saw."""
    if status["result"]["pid"] != server_pid:
        return "in a worker process"
    if status["result"]["thread"] == "MainThread":
        return "on the server's event loop"
    return "in a thread of the server"


def per_task_executors(shop: Shop, settings: Settings) -> Findings:
    """Scenario 4: one response's tasks, each on its own executor; where they ran, in what order."""
    say(
        f"{settings.mixed_orders} orders, one by one. Each response has three tasks, each on the "
        "executor it names: the invoice (CPU work) on process, the receipt (an async wait) "
        "inline, the sale's record (a blocking insert) on thread."
    )
    tick("placing the orders")
    responses = anyio.run(mixed_run, shop, settings)
    rows = []
    for step, first in enumerate(responses[0][1]):
        places = {ran_in(pid, statuses[step]) for pid, statuses in responses}
        executors = {statuses[step]["executor"] for _, statuses in responses}
        label = f"{step + 1}. {first['name'].split('.')[-1]}: {'/'.join(sorted(executors))}, "
        rows.append(Row(label + "/".join(sorted(places)), [took(s[step]) for _, s in responses]))
    kept = sum(
        all(later["started_at"] >= earlier["ended_at"] for earlier, later in itertools.pairwise(s))
        for _, s in responses
    )
    workers = sorted({str(s[0]["result"]["pid"]) for _, s in responses})
    processes = "process" if len(workers) == 1 else "processes"
    return Findings(
        figure="each task (executor, where): time it took",
        rows=rows,
        facts=[
            f"order kept in {kept}/{len(responses)} responses: each task started after the one "
            "before it had ended, whichever executor ran it",
            f"the invoices ran in worker {processes} {', '.join(workers)}; the server is "
            f"process {responses[0][0]}",
        ],
        why=(
            "each task names where it runs (task.set(executor=...), @task_options, or the "
            "response's executor=), so the CPU work leaves the server's process while the "
            "receipt waits on the event loop, where waiting costs nothing, and the list still "
            "runs in its order. Starlette chooses by the function's kind alone: async def on "
            "the loop, def in its threads; a worker process is not among its choices."
        ),
    )


# 5. Following a task ----------------------------------------------------------------------


async def follow_invoices(shop: Shop, settings: Settings) -> set[int]:
    """Start invoices in worker processes, then draw each one's progress, read from the
    status endpoint (``GET /tasks/{id}``), until all are done; return the percentages seen
    while they ran."""
    live, drawn = sys.stdout.isatty(), False
    seen: set[int] = set()
    async with httpx.AsyncClient(base_url=shop.url, timeout=60) as client:
        ids = []
        for order in new_orders(settings.followed):
            params = {"cpu": settings.followed_seconds}
            answer = await client.post(f"/invoices/{order}", params=params)
            ids.append(answer.raise_for_status().json()["id"])
        with anyio.fail_after(60):
            while True:
                statuses = [(await client.get(f"/tasks/{id_}")).json() for id_ in ids]
                lines = [bar_of(n, status) for n, status in enumerate(statuses, start=1)]
                seen.update(percent_of(s) for s in statuses if s["state"] == "running")
                ended = all(status["state"] == "succeeded" for status in statuses)
                if live or ended:  # in place on a terminal; in a log, once at the end
                    back = f"\x1b[{len(lines)}F" if drawn else ""  # up to redraw the bars
                    print(back + "\n".join(lines), flush=True)
                    drawn = True
                if ended:
                    return seen - {0, 100}
                await anyio.sleep(0.05)


def percent_of(status: Any) -> int:
    """How far a task has got, in percent, from its status."""
    if status["state"] == "succeeded":
        return 100
    progress = status["progress"]
    if not isinstance(progress, dict):
        return 0
    return int(progress["done"] * 100 / (progress["total"] or 100))


def bar_of(number: int, status: Any) -> str:
    """``   invoice 1  [#######     ]  58% running``, from one status of the endpoint."""
    percent = percent_of(status)
    filled = BAR_WIDTH * percent // 100
    bar = "#" * filled + " " * (BAR_WIDTH - filled)
    return f"{INDENT}invoice {number:<10}[{bar}] {percent:>3}% {status['state']}"


def following_a_task(shop: Shop, settings: Settings) -> Findings:
    """Scenario 5: invoices in worker processes, drawn from their statuses as they run."""
    say(
        f"{settings.followed} invoices (~{settings.followed_seconds * 1e3:.0f} ms of CPU "
        "work each) start in worker processes, apart from their requests; each bar is "
        "drawn from the task's status (GET /tasks/{id}) as its worker reports progress."
    )
    seen = anyio.run(follow_invoices, shop, settings)
    return Findings(
        figure="",
        rows=[],
        facts=[
            f"progress read while the invoices ran: {len(seen)} distinct values between 0% and 100%"
        ],
        why=(
            "every offload task has an id, and the runtime keeps its status; a task in a worker "
            "process reports its progress (offload.set_progress) while it runs, and the "
            "mounted offload.status_app() serves both. Starlette's tasks have no id, and "
            "nothing to ask."
        ),
    )


# 6. Durable tasks -------------------------------------------------------------------------


@dataclass(frozen=True)
class KillRun:
    """One durable run: the orders accepted, what the kill left, and the recovery."""

    accepted: int
    done_at_kill: int
    running_at_kill: int  # started, not done: the only ones that may run twice
    recovered_in: float  # from the second server's start to the last invoice done
    done: int
    twice: int
    twice_among_running: bool


def durable_run(workdir: Path, run: int, settings: Settings) -> KillRun:
    """Place orders on a server with a journal, SIGKILL it while invoices render, start a
    new one on the same journal; count what ran, and how often."""
    journal = workdir / f"orders-{run}.journal"
    orders = new_orders(settings.durable_orders)
    params = {"cpu": settings.durable_seconds}

    def count(order: int, kind: str) -> int:
        path = outbox / f"durable-{order}.{kind}"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def invoiced(order: int) -> bool:
        return (outbox / f"invoice-{order}.txt").exists()

    with shop(workdir, f"durable-{run}", journal) as first:
        outbox = first.outbox
        for order in orders:
            tick(f"run {run}: placing order {order}")
            httpx.post(f"{first.url}/durable/{order}", params=params).raise_for_status()
        deadline = time.monotonic() + 30
        while sum(count(order, "starts") > 0 for order in orders) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("no invoice started within 30 s")
            time.sleep(0.01)
        tick(f"run {run}: SIGKILL to the server and its worker processes")
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()
    done_at_kill = {order for order in orders if invoiced(order)}
    running = {order for order in orders if count(order, "starts") and not invoiced(order)}
    start = time.perf_counter()
    with shop(workdir, f"durable-{run}-again", journal) as second:
        tick(f"run {run}: the next server on the journal takes over")
        anyio.run(second.wait_for, [f"invoice-{order}.txt" for order in orders])
        recovered_in = time.perf_counter() - start
    twice = {order for order in orders if count(order, "starts") > 1}
    return KillRun(
        accepted=len(orders),
        done_at_kill=len(done_at_kill),
        running_at_kill=len(running),
        recovered_in=recovered_in,
        done=sum(invoiced(order) for order in orders),
        twice=len(twice),
        twice_among_running=twice <= running,
    )


def durable_tasks(shop: Shop, settings: Settings) -> Findings:
    """Scenario 6: kill the server mid-run; the next one on the journal finishes the work."""
    say(
        f"A shop with a journal (a SQLite file) takes {settings.durable_orders} orders; each "
        "response comes once the order's invoice (a process task, durable=True) is written to "
        "the journal. While the invoices render, the server and its worker processes get "
        "SIGKILL, as from the OOM killer. A new server starts on the same journal."
    )
    workdir = shop.outbox.parent
    runs = [durable_run(workdir, run, settings) for run in range(1, settings.durable_runs + 1)]
    facts = [
        f"run {number}: {run.accepted} orders accepted; at the kill {run.done_at_kill} invoices "
        f"were done and {run.running_at_kill} rendering; after the restart {run.done} of "
        f"{run.accepted} were done, {run.twice} rendered twice"
        + (" (all of them among those rendering at the kill)" if run.twice_among_running else "")
        for number, run in enumerate(runs, start=1)
    ]
    return Findings(
        figure="restarted server: start to every invoice done",
        rows=[Row("offload, durable=True, journal", [run.recovered_in for run in runs])],
        facts=facts,
        why=(
            "a durable task is in the journal before its response is sent, and leaves it only "
            "when it has ended; the next runtime on the journal takes over what a dead one "
            "held, at once when that was a process of this host. Only a task that was running "
            "at the kill runs twice (at least once, never lost): durable tasks must be "
            "idempotent. Starlette's tasks live only in the dead server's memory."
        ),
    )


# The demo ---------------------------------------------------------------------------------

#: Each scenario, with its title, in the order the demo runs them.
SCENARIOS: list[tuple[str, Callable[[Shop, Settings], Findings]]] = [
    ("CPU-heavy tasks in worker processes: /ping stays fast", cpu_heavy),
    ("Blocking tasks on offload's own thread limiter: sync endpoints still answer", blocking_tasks),
    ("A task that crashes its worker or hangs touches nothing else", crashes_and_hangs),
    ("One response, a different executor per task, the order kept", per_task_executors),
    ("Following a task in a worker process by its status", following_a_task),
    ("Durable tasks: the server is killed mid-run, and nothing is lost", durable_tasks),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small load, for the tests")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="offload-demo-") as workdir,
        shop(Path(workdir)) as running,
    ):
        say(
            f"The shop runs on uvicorn at {running.url}, {os.cpu_count()} CPUs. Each figure is "
            "measured once per run and shown as the median and the range (min to max) over the "
            "runs; two rows are compared only where every run of one is below every run of the "
            "other."
        )
        for number, (title, scenario) in enumerate(SCENARIOS, start=1):
            print(f"\n{number}. {title}", flush=True)
            print(render(scenario(running, settings)), flush=True)
    print(f"\nThe demo took {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: the server has been stopped on the way out
        print("\nInterrupted.", file=sys.stderr)
        sys.exit(130)
