"""The benchmarks' chart: each row's ratio to its anchor, with its target, a panel per table.

``run.py`` draws it after a run (``make bench``), or again from the tables of
``docs/benchmarks.md``, measuring nothing (``run.py --from-docs``).

The chart is drawn for the docs' text column (about 690 px wide): 8.6 inches at 160 dpi is
twice that, so a 12 pt label reads as about 13 px there, as the text of the tables does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import Row, Table, format_ratio

WIDTH, ROW_HEIGHT, DPI = 8.6, 0.58, 160  # inches, inches per row, dots per inch
# By whether the target was met; a missed one is a diamond, for readers who cannot tell
# the red from the green.
COLOURS = {True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}
MARKERS = {True: "o", False: "D", None: "o"}


@dataclass(frozen=True)
class Bar:
    """One row of a results table as the page shows it: what the chart draws for it, and
    what the notes on missed targets quote.

    :ivar offload: offload's median as shown, with its unit (``"20.9 µs"``)
    :ivar anchor: the anchor's median as shown
    :ivar limit: the target as a bound on ``ratio``, when it is one
    """

    what: str
    offload: str
    anchor: str
    ratio: float
    target: str
    met: bool | None
    limit: float | None


@dataclass(frozen=True)
class Panel:
    """The bars of one table, under its title without the parenthesis (``"Hot path"``)."""

    title: str
    bars: Sequence[Bar]


def panels_of(tables: Sequence[Table]) -> list[Panel]:
    """Return a panel for each table that has rows, as a run measured them."""
    return [
        Panel(short_title(table.title), [bar_of(row) for row in table.rows])
        for table in tables
        if table.rows
    ]


def bar_of(row: Row) -> Bar:
    return Bar(
        row.what,
        median_shown(row.figure.spread(row.scale, row.unit)),
        median_shown(row.anchor.spread(row.scale, row.unit)),
        row.ratio,
        row.target or "-",  # as the table shows it
        row.met,
        row.limit,
    )


# A row of a table of harness.print_table: | what | offload | anchor | ratio | target | met |
_ROW = re.compile(
    r"^\| (?P<what>[^|]+) \| (?P<offload>[^|]+) \| (?P<anchor>[^|]+) "
    r"\| (?P<ratio>[0-9.e+-]+)x \| (?P<target>[^|]+) \| (?P<met>yes|\*\*no\*\*|-) \|$",
    re.M,
)
_MET = {"yes": True, "**no**": False, "-": None}


def panels_in(page: str) -> list[Panel]:
    """Return a panel for each results table of the Markdown ``page`` (``docs/benchmarks.md``)."""
    panels = []
    for section in re.split(r"^### ", page, flags=re.M)[1:]:
        title = section.partition("\n")[0]
        bars = [
            Bar(
                row["what"],
                median_shown(row["offload"]),
                # "label: 3.0 µs (2.9-3.2)"; a label may hold a colon of its own.
                median_shown(row["anchor"].rpartition(": ")[2]),
                float(row["ratio"]),
                row["target"],
                _MET[row["met"]],
                limit_of(row["target"]),
            )
            for row in _ROW.finditer(section)
        ]
        if bars:
            panels.append(Panel(short_title(title), bars))
    return panels


def limit_of(target: str) -> float | None:
    """Read a target as a bound on the ratio, as the benchmarks write them: ``<= 1.10x``
    (``harness.ratio_row``) and ``>= 1.80x faster`` (a ratio of at most 1/1.8)."""
    if match := re.fullmatch(r"<= ([0-9.]+)x", target):
        return float(match[1])
    if match := re.fullmatch(r">= ([0-9.]+)x faster", target):
        return 1 / float(match[1])
    return None


def median_shown(spread: str) -> str:
    """``"20.9 µs"`` of ``"20.9 µs (19.4-23.8)"``."""
    return spread.partition(" (")[0]


def short_title(title: str) -> str:
    return title.partition(" (")[0]


def draw(panels: Sequence[Panel], path: Path) -> None:
    """Draw the panels, one above the other on one log-scaled axis, into a PNG at ``path``.

    Each ratio is a line from the anchor (1x) to a dot: to the left offload is faster (or
    quieter), to the right slower. Each row's label stands above its line, across the width.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator
    from matplotlib.transforms import blended_transform_factory

    panels = [panel for panel in panels if panel.bars]
    rows = [len(panel.bars) for panel in panels]
    values = [1.0, *(v for p in panels for b in p.bars for v in (b.ratio, b.limit) if v)]
    figure, grid = plt.subplots(
        len(panels),
        squeeze=False,
        sharex=True,
        height_ratios=rows,
        figsize=(WIDTH, ROW_HEIGHT * sum(rows) + 0.55 * len(panels) + 1.3),
        layout="constrained",
    )
    for axes, panel in zip(grid[:, 0], panels, strict=True):
        # Label x in axes fractions (the left edge), y in rows.
        left = blended_transform_factory(axes.transAxes, axes.transData)
        for y, bar in zip(range(len(panel.bars))[::-1], panel.bars, strict=True):
            colour = COLOURS[bar.met]
            axes.plot([1.0, bar.ratio], [y, y], color=colour, linewidth=4, solid_capstyle="butt")
            axes.plot([bar.ratio], [y], MARKERS[bar.met], color=colour, markersize=9)
            if bar.limit is not None:
                axes.plot([bar.limit], [y], marker="|", color="black", markersize=18, mew=2.5)
            right = bar.ratio >= 1
            axes.annotate(
                format_ratio(bar.ratio), (bar.ratio, y), xytext=(9 if right else -9, 0),
                textcoords="offset points", ha="left" if right else "right", va="center",
                fontsize=11, fontweight="bold", color=colour,
            )  # fmt: skip
            axes.text(
                0.008, y + 0.24, bar.what, transform=left, ha="left", va="bottom", fontsize=12,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
            )  # fmt: skip
        axes.axvline(1.0, color="#555555", linestyle=":", linewidth=1.2)
        axes.set_ylim(-0.55, len(panel.bars) - 0.2)
        axes.set_yticks([])
        axes.set_title(panel.title, loc="left", fontsize=13, fontweight="bold")
        axes.grid(axis="x", which="major", color="#e0e0e0")
        axes.tick_params(axis="x", labelbottom=True, labelsize=11)
    axes = grid[-1, 0]
    axes.set_xscale("log")
    # Room beside the outermost dots for their ratios.
    axes.set_xlim(min(values) / 4, max(values) * 4)
    axes.xaxis.set_major_locator(LogLocator(base=10))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    axes.set_xlabel(
        "offload median / anchor median (log scale): left of 1x, offload is better",
        fontsize=12,
    )
    figure.legend(
        handles=[
            Line2D([], [], marker="o", linewidth=4, color=COLOURS[True], label="target met"),
            Line2D([], [], marker="D", linewidth=4, color=COLOURS[False], label="target missed"),
            Line2D([], [], marker="o", linewidth=4, color=COLOURS[None], label="no target"),
            Line2D([], [], marker="|", color="black", linestyle="", markersize=14, mew=2.5,
                   label="target"),
        ],
        loc="outside upper center", ncols=4, fontsize=12, frameon=False,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
