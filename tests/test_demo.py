"""``make demo``, with a small load: it runs end to end on a real server and prints each
scenario. Only what does not depend on the machine's speed is checked: the quick load's
figures show that the demo works, not what offload is worth."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).parent.parent / "examples" / "demo.py"


@pytest.fixture(scope="module")
def output() -> str:
    """What ``demo.py --quick`` prints, run once for the module."""
    result = subprocess.run(
        [sys.executable, str(DEMO), "--quick"], capture_output=True, text=True, timeout=50
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def section(output: str, number: int) -> str:
    """The text of scenario ``number``, from its title to the next one's."""
    match = re.search(rf"^{number}\. .*?(?=^\d\. |\Z)", output, re.MULTILINE | re.DOTALL)
    assert match is not None, output
    return match.group()


def unwrapped(text: str) -> str:
    """``text`` with its lines joined and its spaces collapsed, as it was before wrapping."""
    return " ".join(text.split())


def test_the_demo_prints_six_scenarios_each_saying_why(output: str) -> None:
    for number in range(1, 7):
        assert "\n   Why: " in section(output, number)


def test_every_table_row_shows_the_median_and_the_range(output: str) -> None:
    figure = r"\d+(\.\d+)? m?s"
    rows = re.findall(rf"^   \S.*  {figure}   {figure} to {figure}$", output, re.MULTILINE)
    assert len(rows) == 3 + 2 + 2 + 3 + 1, output  # the rows of scenarios 1 to 4, and 6


def test_rows_are_compared_only_where_their_runs_do_not_overlap(output: str) -> None:
    for number in (1, 2):
        facts = unwrapped(section(output, number))
        assert "against the other's best" in facts or "the runs overlap" in facts, facts


def test_a_crash_or_a_hang_touches_nothing_else(output: str) -> None:
    faults = unwrapped(section(output, 3))
    assert "crashing task: failed in 1/1 runs, with WorkerCrashed: " in faults
    assert "hung task: timed_out in 1/1 runs" in faults
    assert "ordinary invoices beside them: 2/2 succeeded" in faults
    assert "the server itself exited (code 1)" in faults


def test_one_responses_tasks_run_on_their_executors_in_order(output: str) -> None:
    mixed = unwrapped(section(output, 4))
    assert "1. render_invoice: process, in a worker process" in mixed
    assert "2. send_receipt: inline, on the server's event loop" in mixed
    assert "3. record_sale: thread, in a thread of the server" in mixed
    assert "order kept in 2/2 responses" in mixed


def test_the_followed_invoices_are_drawn_to_the_end(output: str) -> None:
    followed = [line for line in section(output, 5).splitlines() if " invoice " in line]
    assert len(followed) == 3, followed
    assert all(line.endswith("] 100% succeeded") for line in followed), followed


def test_a_killed_server_s_durable_tasks_all_run_after_the_restart(output: str) -> None:
    durable = unwrapped(section(output, 6))
    match = re.search(
        r"(\d+) orders accepted; at the kill (\d+) invoices were done and (\d+) rendering; "
        r"after the restart (\d+) of (\d+) were done, (\d+) rendered twice",
        durable,
    )
    assert match is not None, durable
    accepted, done_at_kill, _, done, of, twice = map(int, match.groups())
    assert done_at_kill < accepted  # killed mid-run, or the scenario shows nothing
    assert done == of == accepted
    if twice:
        assert "all of them among those rendering at the kill" in durable
