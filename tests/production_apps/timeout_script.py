"""A plain script: one process task that starts a grandchild, then outlives its timeout.

``python -m production_apps.timeout_script KIND PID_FILE MARK_FILE RESULT_FILE``, KIND
``popen`` or ``multiprocessing``. A first task warms the worker up (its pid goes to MARK_FILE),
so the timed task starts at once; the grandchild's pid goes to PID_FILE. Writes
``{"elapsed": seconds the timed task took, "status": its report's status}`` to RESULT_FILE,
then waits until its stdin closes before it leaves the runtime, so that the test looks at the
grandchild while the runtime is still open.
"""

from __future__ import annotations

import json
import sys
import time

import anyio
import anyio.to_thread

import offload
from offload import BackgroundTask, BackgroundTasks

from .tasks import (
    mark,
    multiprocessing_grandchild_then_hang,
    popen_grandchild_then_hang,
    write_atomically,
)

KINDS = {
    "popen": popen_grandchild_then_hang,
    "multiprocessing": multiprocessing_grandchild_then_hang,
}


async def main(kind: str, pid_file: str, mark_file: str, result_file: str) -> None:
    async with offload.Runtime(offload.OffloadConfig(process_workers=1)):
        await BackgroundTasks([BackgroundTask(mark, mark_file).set(executor="process")])()
        tasks = BackgroundTasks(on_error="continue")
        tasks.add_task(KINDS[kind], pid_file).set(executor="process", timeout=1)
        started = time.monotonic()
        await tasks()
        elapsed = time.monotonic() - started
        result = {"elapsed": elapsed, "status": tasks.reports[0].status}
        write_atomically(result_file, json.dumps(result))
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    kind, pid_file, mark_file, result_file = sys.argv[1:5]
    anyio.run(main, kind, pid_file, mark_file, result_file)
