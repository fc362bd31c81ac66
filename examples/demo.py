"""make demo: CPU-heavy background tasks on each executor, and what the server's users feel.

Starts the shop of ``demo_app.py`` on a real uvicorn server (a subprocess on 127.0.0.1), then,
for each way of running background tasks, places a batch of orders one after another while
another client pings the server every 10 ms. Every order schedules a CPU-heavy task (render
the invoice) and an I/O task (send the receipt). A progress bar follows the tasks as they
end; a table then compares, per executor, how fast orders were answered, how fast pings were
answered during the load, and when the last task ended.

``--quick`` runs a small load (a few seconds), as the test suite does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

APP = Path(__file__).with_name("demo_app.py")

#: (the app's ``?executor=``, what the table calls it), the baseline first.
SCENARIOS = [
    ("starlette", "Starlette BackgroundTask"),
    ("inline", "offload inline"),
    ("thread", "offload thread"),
    ("process", "offload process"),
    ("per-task", "offload per task"),
]
PING_EVERY = 0.010
BAR_WIDTH = 24
FOLLOWED = 3  # invoices whose progress the demo draws, read from the status endpoint


@dataclass(frozen=True)
class Load:
    """How much work each scenario gets."""

    orders: int
    cpu_seconds: float  # of pure-Python work per invoice


@dataclass(frozen=True)
class Result:
    """What one scenario measured, in seconds."""

    label: str
    responses: list[float]
    pings: list[float]
    all_done: float

    def row(self) -> str:
        """This result as a line of the table that :func:`summary` prints."""
        latencies = [
            statistics.median(self.responses),
            statistics.median(self.pings),
            percentile(self.pings, 99),
        ]
        columns = "".join(f"{seconds * 1e3:>10.1f} ms" for seconds in latencies)
        return f"{self.label:<26}{columns}{self.all_done:>10.2f} s"


def percentile(values: Sequence[float], percent: int) -> float:
    """Return the ``percent``-th percentile of ``values`` (at least one)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


@contextlib.contextmanager
def shop(outbox: str) -> Iterator[str]:
    """Run ``demo_app.py`` on uvicorn in a subprocess; yield its URL once it answers, and
    stop it gracefully (as Ctrl-C does) on exit, whatever happened."""
    process = subprocess.Popen(
        [sys.executable, str(APP), "--port", "0", "--outbox", outbox],
        stdout=subprocess.PIPE,
        text=True,
        # Its own session: Ctrl-C in the terminal reaches this script only, which then
        # stops the server (and so its worker processes) in order, below.
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "<url> outbox <folder>", once the port is bound
        if not line:
            raise RuntimeError(f"the demo app exited with code {process.wait()}")
        url = line.split()[0]
        deadline = time.monotonic() + 60
        while True:  # it answers once its lifespan has started the worker processes
            try:
                httpx.get(f"{url}/ping").raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the demo app did not start") from None
                time.sleep(0.05)
        yield url
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


def progress(label: str, done: int, total: int, elapsed: float) -> str:
    """``  label  [#####       ] 12/20 tasks  1.30 s``: plain text, no dependency needed."""
    filled = BAR_WIDTH * done // total
    bar = "#" * filled + " " * (BAR_WIDTH - filled)
    return f"  {label:<26}[{bar}] {done:>3}/{total} tasks {elapsed:5.2f} s"


async def run_scenario(
    url: str, executor: str, label: str, order_ids: range, load: Load, outbox: Path
) -> Result:
    """Place the orders while pinging; follow the tasks until the last has ended."""
    expected = {f"{kind}-{order}.txt" for order in order_ids for kind in ("invoice", "receipt")}
    responses: list[float] = []
    pings: list[float] = []
    finished = anyio.Event()
    live = sys.stdout.isatty()  # redraw the bar in place; in a log, print it once at the end

    async def ping(client: httpx.AsyncClient) -> None:
        start = time.perf_counter()
        (await client.get("/ping")).raise_for_status()
        pings.append(time.perf_counter() - start)

    async def ping_every(client: httpx.AsyncClient) -> None:
        # On a fixed schedule, without waiting for the last answer: a stalled server keeps
        # getting pings, as it keeps getting users, and each one counts how long it waited.
        async with anyio.create_task_group() as pings_in_flight:
            next_at = time.perf_counter()
            while not finished.is_set():
                pings_in_flight.start_soon(ping, client)
                next_at += PING_EVERY
                await anyio.sleep(max(0.0, next_at - time.perf_counter()))

    async def order(client: httpx.AsyncClient) -> None:
        for order_id in order_ids:
            start = time.perf_counter()
            params: dict[str, str | float] = {"executor": executor, "cpu": load.cpu_seconds}
            (await client.post(f"/orders/{order_id}", params=params)).raise_for_status()
            responses.append(time.perf_counter() - start)

    async with (
        httpx.AsyncClient(base_url=url, timeout=120) as orders,
        httpx.AsyncClient(base_url=url, timeout=120) as pinger,
    ):
        await orders.get("/ping")  # connected before the clock starts
        await pinger.get("/ping")
        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            group.start_soon(ping_every, pinger)
            group.start_soon(order, orders)
            with anyio.fail_after(120):
                # Polled: the tasks end in other processes, or threads, of another program.
                while True:
                    done = len(expected.intersection(os.listdir(outbox)))
                    elapsed = time.perf_counter() - start
                    if live:
                        print(f"\r{progress(label, done, len(expected), elapsed)}", end="")
                        sys.stdout.flush()
                    if done == len(expected):
                        break
                    await anyio.sleep(0.02)
            finished.set()
    if not live:
        print(progress(label, len(expected), len(expected), elapsed), end="")
    print(flush=True)
    return Result(label, responses, pings, elapsed)


def summary(results: Sequence[Result]) -> str:
    """The table, then each offload executor against the baseline (the first result)."""
    header = f"{'':<26}{'response p50':>13}{'/ping p50':>13}{'/ping p99':>13}{'all done':>12}"
    lines = [header, "-" * len(header), *(result.row() for result in results), ""]
    base = results[0]
    for result in results[1:]:
        ping = percentile(base.pings, 99) / percentile(result.pings, 99)
        done = base.all_done / result.all_done
        lines.append(
            f"{result.label + ':':<18} /ping p99 {times(ping, 'lower', 'higher')}, "
            f"all done {times(done, 'sooner', 'later')} than {base.label}"
        )
    return "\n".join(lines)


def times(factor: float, better: str, worse: str) -> str:
    """``2.5x lower`` for a factor above 1, ``3.0x higher`` below 1."""
    return f"{factor:.1f}x {better}" if factor >= 1 else f"{1 / factor:.1f}x {worse}"


async def follow_invoices(url: str, cpu_seconds: float, first_order: int) -> None:
    """Start invoices in worker processes, then draw each one's progress, read from the
    status endpoint (``GET /tasks/{id}``), until all are done."""
    live, drawn = sys.stdout.isatty(), False
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        ids = []
        for order in range(first_order, first_order + FOLLOWED):
            answer = await client.post(f"/invoices/{order}", params={"cpu": cpu_seconds})
            ids.append(answer.raise_for_status().json()["id"])
        with anyio.fail_after(120):
            while True:
                statuses = [(await client.get(f"/tasks/{id_}")).json() for id_ in ids]
                lines = [bar_of(n, status) for n, status in enumerate(statuses, start=1)]
                ended = all(status["state"] == "succeeded" for status in statuses)
                if live or ended:  # in place on a terminal; in a log, once at the end
                    back = f"\x1b[{len(lines)}F" if drawn else ""  # up to redraw the bars
                    print(back + "\n".join(lines), flush=True)
                    drawn = True
                if ended:
                    return
                await anyio.sleep(0.05)


def bar_of(number: int, status: dict[str, object]) -> str:
    """``  invoice 1  [#######     ]  58% running``, from one status of the endpoint."""
    progress = status["progress"]
    percent = 0
    if isinstance(progress, dict):
        percent = int(progress["done"] * 100 / (progress["total"] or 100))
    if status["state"] == "succeeded":
        percent = 100
    filled = BAR_WIDTH * percent // 100
    bar = "#" * filled + " " * (BAR_WIDTH - filled)
    return f"  invoice {number:<17}[{bar}] {percent:>3}% {status['state']}"


async def drive(url: str, load: Load, outbox: Path) -> list[Result]:
    """Run every scenario, one after another, against the shop at ``url``."""
    results: list[Result] = []
    for number, (executor, label) in enumerate(SCENARIOS, start=1):
        order_ids = range(number * 1000, number * 1000 + load.orders)  # unique in the outbox
        results.append(await run_scenario(url, executor, label, order_ids, load, outbox))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small load, for the tests")
    args = parser.parse_args()
    load = Load(orders=3, cpu_seconds=0.05) if args.quick else Load(orders=10, cpu_seconds=0.2)
    print(
        f"Each scenario: {load.orders} orders in a row; each order schedules an invoice "
        f"(~{load.cpu_seconds * 1e3:.0f} ms of pure-Python CPU work) and a receipt (a 100 ms "
        f"wait), while another client pings the server every {PING_EVERY * 1e3:.0f} ms.",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="offload-demo-") as outbox, shop(outbox) as url:
        print(f"The shop runs on uvicorn at {url}, {os.cpu_count()} CPUs.\n", flush=True)
        results = anyio.run(drive, url, load, Path(outbox))
        print(f"\n{summary(results)}\n")
        print(
            f"Following {FOLLOWED} invoices in worker processes, each drawn from its status "
            "(GET /tasks/{id}), as the workers report their progress:",
            flush=True,
        )
        anyio.run(follow_invoices, url, load.cpu_seconds * 5, 9000)
        print()
    print(
        "On the event loop (inline) the invoices freeze the server: pings and new orders\n"
        "wait for each one. On threads, the GIL lets one invoice run at a time, and the\n"
        "server competes with them for it. In worker processes they run in parallel and the\n"
        "server stays free; choosing per task also keeps waiting (the receipts) off the workers."
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: the server has been stopped on the way out
        print("\nInterrupted.", file=sys.stderr)
        sys.exit(130)
