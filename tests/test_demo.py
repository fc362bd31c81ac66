"""``make demo``, with a small load: it runs end to end on a real server and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).parent.parent / "examples" / "demo.py"


def test_the_demo_runs_every_executor_and_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    header = next(line for line in result.stdout.splitlines() if "/ping p99" in line)
    assert header.split() == ["response", "p50", "/ping", "p50", "/ping", "p99", "all", "done"]
    for label in (
        "Starlette BackgroundTask",
        "offload inline",
        "offload thread",
        "offload process",
        "offload per task",
    ):
        row = next(line for line in result.stdout.splitlines() if line.startswith(label + " "))
        assert row.endswith(" s"), row  # a figure in every column, the last in seconds
    followed = [line for line in result.stdout.splitlines() if line.startswith("  invoice ")]
    assert len(followed) == 3
    assert all(line.endswith("] 100% succeeded") for line in followed), followed
