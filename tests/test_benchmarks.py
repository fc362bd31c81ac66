"""The benchmarks' machinery, timing nothing: rounds, tables, the report page and its chart,
and one round of the end-to-end benchmark on its real server."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

# The benchmarks are scripts that import each other as top-level modules, as run.py does.
sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

import bench_e2e
import harness
import run


@pytest.fixture(autouse=True)
def _no_tables_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "TABLES", [])


def row(met: bool | None, ratio: float = 1.5) -> harness.Row:
    figure = harness.Figure("offload", [ratio * 2e-6, ratio * 3e-6])
    anchor = harness.Figure("anchor", [2e-6, 3e-6])
    target = "" if met is None else "<= 1.10x"
    return harness.Row("one request", figure, anchor, 1e6, "µs", target, met, limit=1.10)


@pytest.mark.anyio
async def test_interleaved_metrics_keep_one_sample_per_round_of_each_metric() -> None:
    runs: list[str] = []

    async def variant(label: str) -> dict[str, float]:
        runs.append(label)
        return {"p50": 1.0, "done": 2.0}

    figures = await harness.interleaved_metrics(
        {"a": lambda: variant("a"), "b": lambda: variant("b")}, rounds=3
    )

    assert sorted(runs) == ["a"] * 3 + ["b"] * 3
    assert figures["a"]["done"] == harness.Figure("a", [2.0, 2.0, 2.0])
    assert figures["b"]["p50"].median == 1.0


def test_a_table_says_which_targets_were_missed() -> None:
    markdown = harness.print_table("Title", [row(True, 1.0), row(False), row(None)], note="How.")

    lines = markdown.splitlines()
    assert lines[:3] == ["### Title", "", "How."]
    assert lines[-3].endswith("| 1.00x | <= 1.10x | yes |")
    assert lines[-2].endswith("| 1.50x | <= 1.10x | **no** |")
    assert lines[-1].endswith("| - | - |")
    assert [(table.title, table.markdown) for table in harness.TABLES] == [("Title", markdown)]


def test_the_report_page_holds_every_table_and_links_its_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    harness.print_table("Measured", [row(True, 0.001), row(False)])
    own = harness.Table("", [], markdown="### A benchmark's own table")

    run.write_docs([*harness.TABLES, own], ["Dask was skipped."], "On a test.", docs=tmp_path)

    page = (tmp_path / "benchmarks.md").read_text(encoding="utf-8")
    assert "](img/benchmarks.png)" in page
    for part in ("On a test.", "> Dask was skipped.", "### Measured", "0.001x", "own table"):
        assert part in page
    assert (tmp_path / "img" / "benchmarks.png").read_bytes().startswith(b"\x89PNG")


def test_one_round_of_the_end_to_end_benchmark_runs_on_its_server() -> None:
    with harness.server("server_app") as url:
        for route in bench_e2e.ROUTES.values():
            figures = anyio.run(bench_e2e.load_once, url, route, 1_000, 2)
            assert set(figures) == {"p50", "p99", "done"}
            assert all(value > 0 for value in figures.values())
