"""A small soak: a real server, 200 requests, each background task run exactly once.

``make soak`` runs the full one (``benchmarks/soak.py``, 5,000 requests by default).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).parent.parent / "benchmarks" / "soak.py"


def test_every_task_of_200_requests_runs_exactly_once_and_memory_stays_flat() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--requests", "200", "--clients", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tasks: 400 of 400 ran (one file each); reports: {'succeeded': 400}" in result.stdout
    assert "shutdown on SIGTERM: graceful" in result.stdout
    assert "statuses kept: 100 (keep_statuses=100)" in result.stdout
    assert result.stdout.rstrip().endswith("OK")
