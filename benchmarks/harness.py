"""Side-by-side measurement: interleaved rounds, medians with min-max, ratios to an anchor."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


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


async def interleaved(
    variants: dict[str, Callable[[], Awaitable[float]]], rounds: int
) -> dict[str, Figure]:
    """Run each variant once per round, in a fresh random order each round.

    Interleaving spreads the machine's noise (other processes, CPU frequency) evenly over
    the variants, so their ratio is fair even when the absolute figures drift.

    :param variants: label -> coroutine function returning one sample (e.g. seconds per call)
    """
    samples: dict[str, list[float]] = {label: [] for label in variants}
    labels = list(variants)
    for _ in range(rounds):
        random.shuffle(labels)
        for label in labels:
            samples[label].append(await variants[label]())
    return {label: Figure(label, values) for label, values in samples.items()}


async def per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    """Return the mean seconds of one ``await call()`` over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - start) / calls


@dataclass(frozen=True)
class Row:
    """One line of a results table: a figure against its anchor, and the target."""

    what: str
    figure: Figure
    anchor: Figure
    scale: float
    unit: str
    target: str
    met: bool

    @property
    def ratio(self) -> float:
        return self.figure.median / self.anchor.median


def ratio_row(
    what: str, figure: Figure, anchor: Figure, *, limit: float, scale: float = 1e6, unit: str = "µs"
) -> Row:
    """A row whose target is ``figure / anchor <= limit``."""
    ratio = figure.median / anchor.median
    return Row(what, figure, anchor, scale, unit, f"<= {limit:.2f}x", ratio <= limit)


def print_table(title: str, rows: Sequence[Row]) -> str:
    """Print the rows as a Markdown table and return it."""
    lines = [
        f"### {title}",
        "",
        "| measurement | offload: median (min-max) | anchor: median (min-max) "
        "| ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.what} | {row.figure.spread(row.scale, row.unit)} "
            f"| {row.anchor.label}: {row.anchor.spread(row.scale, row.unit)} "
            f"| {row.ratio:.2f}x | {row.target} | {'yes' if row.met else '**no**'} |"
        )
    table = "\n".join(lines)
    print(table, flush=True)
    return table
