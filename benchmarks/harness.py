"""Side-by-side measurement: interleaved rounds, medians with min-max, ratios to an anchor.

Also what several benchmarks share: CPU-bound work, a server in a subprocess, and the Markdown
tables of the report that ``benchmarks/run.py`` writes (its chart is ``chart.py``'s).

Only the standard library is imported at the top: worker processes import this module for
:func:`burn`, and should not pay for uvicorn or matplotlib.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Figure:
    """One measured quantity: its samples, one per round."""

    label: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def spread(self, scale: float, unit: str) -> str:
        return (
            f"{self.median * scale:.1f} {unit} "
            f"({min(self.samples) * scale:.1f}-{max(self.samples) * scale:.1f})"
        )


@dataclass(frozen=True)
class Rate(Figure):
    """A figure sampled as seconds per item (a list, a request) and shown as items per second.

    Its median, and so its ratio to an anchor, stays in seconds per item: lower is better,
    as in every other row.
    """

    def spread(self, scale: float, unit: str) -> str:
        rates = [scale / sample for sample in self.samples]
        return f"{statistics.median(rates):,.0f} {unit} ({min(rates):,.0f}-{max(rates):,.0f})"


async def interleaved(
    variants: Mapping[str, Callable[[], Awaitable[float]]], rounds: int
) -> dict[str, Figure]:
    """Run each variant once per round, in a fresh random order each round.

    Interleaving spreads the machine's noise (other processes, CPU frequency) evenly over
    the variants, so their ratio is fair even when the absolute figures drift.

    :param variants: label -> coroutine function returning one sample (e.g. seconds per call)
    """

    def one_metric(
        measure: Callable[[], Awaitable[float]],
    ) -> Callable[[], Awaitable[dict[str, float]]]:
        async def sample() -> dict[str, float]:
            return {"": await measure()}

        return sample

    figures = await interleaved_metrics(
        {label: one_metric(measure) for label, measure in variants.items()}, rounds
    )
    return {label: metrics[""] for label, metrics in figures.items()}


async def interleaved_metrics(
    variants: Mapping[str, Callable[[], Awaitable[dict[str, float]]]], rounds: int
) -> dict[str, dict[str, Figure]]:
    """As :func:`interleaved`, for variants whose every run yields several metrics at once
    (say a p50, a p99 and a total time).

    :returns: variant label -> metric name -> figure, labelled with the variant
    """
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in variants}
    labels = list(variants)
    for _ in range(rounds):
        random.shuffle(labels)
        for label in labels:
            for metric, value in (await variants[label]()).items():
                samples[label].setdefault(metric, []).append(value)
    return {
        label: {metric: Figure(label, values) for metric, values in metrics.items()}
        for label, metrics in samples.items()
    }


async def per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    """Return the mean seconds of one ``await call()`` over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - start) / calls


def percentile(values: Sequence[float], percent: int) -> float:
    """Return the ``percent``-th percentile of ``values`` (at least one)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def load_average() -> str:
    """The machine's 1, 5 and 15-minute load averages: the noise the figures were taken in."""
    return "/".join(f"{load:.2f}" for load in os.getloadavg())


# --- CPU-bound work --------------------------------------------------------------------------


def burn(iterations: int) -> int:
    """Pure-Python CPU work that holds the GIL throughout."""
    total = 0
    for i in range(iterations):
        total += i * i
    return total


def burn_and_mark(iterations: int, marker: str) -> None:
    """:func:`burn`, then create the file ``marker``: how a client outside the server sees
    that the task has ended, without asking the (possibly busy) server."""
    burn(iterations)
    Path(marker).touch()


def calibrate(seconds: float) -> int:
    """Return how many iterations of :func:`burn` take about ``seconds`` here."""
    iterations = 100_000
    while True:
        start = time.perf_counter()
        burn(iterations)
        elapsed = time.perf_counter() - start
        if elapsed > 0.1:
            return int(iterations * seconds / elapsed)
        iterations *= 2


# --- a real server ---------------------------------------------------------------------------


def serve(app: Any) -> None:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 until SIGINT or SIGTERM.

    The first line printed on stdout is the server's base URL, for :func:`server`.
    """
    import uvicorn

    # IPPROTO_TCP, not the default 0: only then does asyncio set TCP_NODELAY on connections,
    # without which Nagle's algorithm holds a response's body back ~40 ms (delayed ACKs).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))  # port 0: the kernel picks a free one, with no race
    print(f"http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    # uvicorn shuts down gracefully (lifespan included) on SIGINT, then raises it again.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listener])


@contextmanager
def server(module: str, *, timeout: float = 30) -> Iterator[str]:
    """Run ``benchmarks/<module>.py``'s ``app`` on a uvicorn server in a subprocess; yield
    its base URL once it answers ``GET /ping``, and stop it cleanly on exit.

    A subprocess, so that the client measuring the server does not share its GIL.

    :raises RuntimeError: if the server does not start within ``timeout`` seconds
    """
    import httpx

    code = f"""
        import sys
        sys.path.insert(0, {str(BENCHMARKS)!r})
        import harness, {module}
        harness.serve({module}.app)
    """
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C stops the benchmark, which then stops the server
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url:
            raise RuntimeError(f"the {module} server exited with code {process.wait()}")
        deadline = time.monotonic() + timeout
        while True:  # the port is bound at once, but answers once the lifespan has started
            try:
                httpx.get(f"{url}/ping", timeout=timeout).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {module} server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        stop(process, timeout)


def stop(process: subprocess.Popen[str], timeout: float) -> None:
    """Stop a server gracefully (SIGINT, as Ctrl-C would), killing it if it takes too long."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of a results table: a figure against its anchor, and the target.

    :ivar met: whether the target was met; ``None`` for a row shown for information only
    :ivar limit: the target as a bound on ``ratio``, when it is one (drawn on the chart)
    """

    what: str
    figure: Figure
    anchor: Figure
    scale: float
    unit: str
    target: str
    met: bool | None
    limit: float | None = None

    @property
    def ratio(self) -> float:
        return self.figure.median / self.anchor.median


def ratio_row(
    what: str, figure: Figure, anchor: Figure, *, limit: float, scale: float = 1e6, unit: str = "µs"
) -> Row:
    """A row whose target is ``figure / anchor <= limit``."""
    ratio = figure.median / anchor.median
    return Row(what, figure, anchor, scale, unit, f"<= {limit:.2f}x", ratio <= limit, limit)


def format_ratio(ratio: float) -> str:
    """``1.07x``, or two significant digits below 0.1x (``0.0023x``) rather than ``0.00x``."""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


@dataclass(frozen=True)
class Table:
    """A titled group of rows, with a note on what was measured and how."""

    title: str
    rows: Sequence[Row]
    note: str = ""
    markdown: str = field(default="", compare=False)


#: Every table :func:`print_table` has printed in this process, for ``run.py``'s report.
TABLES: list[Table] = []


def print_table(title: str, rows: Sequence[Row], note: str = "") -> str:
    """Print the rows as a Markdown table, record it in :data:`TABLES`, and return it."""
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines += [
        "| measurement | offload: median (min-max) | anchor: median (min-max) "
        "| ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    met = {True: "yes", False: "**no**", None: "-"}
    for row in rows:
        lines.append(
            f"| {row.what} | {row.figure.spread(row.scale, row.unit)} "
            f"| {row.anchor.label}: {row.anchor.spread(row.scale, row.unit)} "
            f"| {format_ratio(row.ratio)} | {row.target or '-'} | {met[row.met]} |"
        )
    markdown = "\n".join(lines)
    TABLES.append(Table(title, rows, note, markdown))
    print(markdown, "", sep="\n", flush=True)
    return markdown
