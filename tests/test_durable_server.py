"""Durable tasks under real kills: a uvicorn server with a journal is SIGKILLed while its
durable process tasks run, and the next server (or the other worker) runs what was left.

The app is ``tests/production_apps/durable.py``: each order's task marks its start and its
end in files, so the test sees what ran, and how often. Needs the process executor.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from offload._journal import Journal
from test_production import Server, serving, uvicorn, wait_until

APP = "production_apps.durable:app"
ORDERS = 10
SECONDS = 1.5  # each task's work: 2 process workers take 7.5 s for all of them


class Shop:
    """The files of one test: the journal, and the marks the tasks leave."""

    def __init__(self, tmp_path: Path) -> None:
        self.journal = tmp_path / "tasks.journal"
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.env = {"OFFLOAD_JOURNAL": str(self.journal), "OFFLOAD_SHUTDOWN_TIMEOUT": "1"}

    def order(self, server: Server, order: int) -> int:
        """Place an order; return the pid of the server process that journaled it."""
        response = server.client.get(
            "/order", params={"id": str(order), "seconds": SECONDS, "marks": str(self.marks)}
        )
        assert response.status_code == 200, response.text
        return int(response.json()["pid"])

    def count(self, order: int, what: str) -> int:
        path = self.marks / f"{order}.{what}"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def started(self) -> set[int]:
        return {order for order in range(ORDERS) if self.count(order, "starts")}

    def done(self) -> set[int]:
        return {order for order in range(ORDERS) if self.count(order, "done")}

    def in_journal(self) -> set[int]:
        """The orders whose task the journal still holds (read with the server dead)."""
        journal = Journal(self.journal)
        journal.open()
        try:
            return {int(entry.name.split()[-1]) for entry in journal.entries()}
        finally:
            journal.close()


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop(tmp_path)


def assert_all_ran_once_but_the_interrupted(shop: Shop, interrupted: set[int]) -> None:
    twice = {order for order in range(ORDERS) if shop.count(order, "starts") > 1}
    assert shop.done() == set(range(ORDERS)), "an accepted order's task never ran"
    assert twice <= interrupted, f"ran twice though not running at the kill: {twice}"


def test_a_killed_server_s_tasks_run_when_it_starts_again(shop: Shop, tmp_path: Path) -> None:
    with serving(uvicorn(APP), tmp_path, "first", env=shop.env) as server:
        for order in range(ORDERS):
            shop.order(server, order)
        assert wait_until(lambda: len(shop.started()) >= 2, 30), server.output()
        os.killpg(server.pid, signal.SIGKILL)
        server.wait_ended()
    unfinished = set(range(ORDERS)) - shop.done()
    assert unfinished, "every task ended before the kill: the test proves nothing"
    # Started, and still journaled: what the kill interrupted, the only ones that may run twice.
    interrupted = shop.started() & shop.in_journal()
    assert shop.in_journal() >= unfinished, "an accepted order's task left the journal unrun"
    with serving(uvicorn(APP), tmp_path, "second", env=shop.env) as server:
        assert wait_until(lambda: shop.done() == set(range(ORDERS)), 60), server.output()
        # Ended tasks leave the journal.
        assert wait_until(lambda: not shop.in_journal(), 10), shop.in_journal()
    assert_all_ran_once_but_the_interrupted(shop, interrupted)


def test_the_other_worker_takes_over_a_killed_worker_s_tasks(shop: Shop, tmp_path: Path) -> None:
    with serving(uvicorn(APP, "--workers", "2"), tmp_path, "pair", env=shop.env) as server:
        pids: dict[int, int] = {}  # order -> the worker that journaled it
        for order in range(ORDERS):
            pids[order] = shop.order(server, order)
        assert wait_until(lambda: len(shop.started()) >= 2, 30), server.output()
        victim = pids[min(shop.started())]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        victims = {order for order, pid in pids.items() if pid == victim}
        interrupted = victims - shop.done()
        assert interrupted, "the killed worker had no task left: the test proves nothing"
        assert wait_until(lambda: shop.done() == set(range(ORDERS)), 60), server.output()
        took = time.monotonic() - killed_at
    assert_all_ran_once_but_the_interrupted(shop, interrupted)
    assert took < 60, took
