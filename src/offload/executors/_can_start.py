"""Why worker processes cannot start here, said before multiprocessing says it worse.

Two situations stop a process pool in ways whose own errors do not say the fix: a daemonic
process (hypercorn runs its workers as daemons by default) may not have children, and a
main module that runs its top-level code without an ``if __name__ == "__main__":`` guard runs
it again in every worker, which then fails with pages of tracebacks.
"""

from __future__ import annotations

import ast
import functools
import multiprocessing
import os
import sys
import threading
from types import FrameType, ModuleType

from .._exceptions import OffloadError


def check_can_start_workers(start_method: str) -> None:
    """Check that this process can start worker processes with ``start_method``.

    :raises OffloadError: naming the cause and the fix, if it cannot
    """
    current = multiprocessing.current_process()
    if current.daemon:
        raise OffloadError(
            f"the process executor cannot start worker processes: this process "
            f"({current.name}) is a daemonic process, and those may not have children. "
            "Run the server with non-daemonic workers: for hypercorn, set `daemon = false` "
            "in its config file (hypercorn --config), or serve from its main process with -w 0"
        )
    check_main_guard(start_method)


def check_main_guard(start_method: str) -> None:
    """Check that workers started with ``start_method`` would not run the app again.

    ``spawn`` and ``forkserver`` workers import the main module; if it is running its
    top-level code outside an ``if __name__ == "__main__":`` guard now, each would run that
    code again, and fail with pages of tracebacks that do not say the fix. The process
    executor checks this as soon as a task is bound to it, so the error comes from the
    line that bound it, with a short traceback, rather than from the task's run.

    :raises OffloadError: naming the line and the fix, if workers would run it again
    """
    if start_method == "fork":
        return
    unreadable = _unimportable_main()
    if unreadable is not None:
        raise OffloadError(
            f"the process executor cannot start {start_method} worker processes: each imports "
            f"the main module again, and it comes from {unreadable}, which is not a file it "
            "can read; save the code to a file and run that, or use start_method='fork'"
        )
    line = _unguarded_main_line()
    if line is not None:
        path, lineno = line
        # One line, so that it is the last one of the traceback, and the fix at its end.
        raise OffloadError(
            f"the process executor cannot start worker processes while the main module "
            f"{path} runs its top-level code (line {lineno}), which each worker would run "
            "again as it imports the module: put the code that starts the app or runs the "
            'tasks under `if __name__ == "__main__":`'
        )


def _unimportable_main() -> str | None:
    """Return where the main module came from if workers could not import it again (it was
    read from standard input: ``python - < script.py``), else ``None``."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str) or not _reimported_by_workers(main):
        return None
    return None if os.path.isfile(path) else path


def _unguarded_main_line() -> tuple[str, int] | None:
    """Return where the main module's top-level code runs now, outside a ``__main__`` guard."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str) or not _reimported_by_workers(main):
        return None
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None and not _is_top_level_of(frame, main):
        frame = frame.f_back
    if frame is None:  # the main module has finished its top-level code
        return None
    lineno = frame.f_lineno
    for first, last, guarded in _top_level_statements(path):
        if first <= lineno <= last:
            return None if guarded else (path, lineno)
    return None


@functools.lru_cache(maxsize=4)
def _top_level_statements(path: str) -> tuple[tuple[int, int, bool], ...]:
    """Return the first and last line of each top-level statement of the module at ``path``,
    and whether it is a ``__main__`` guard; nothing if it cannot be read.

    Cached: it is asked each time a task is bound to a process executor that has not
    started yet, and a script does not change under the process running it.
    """
    try:
        with open(path, encoding="utf-8") as source:
            tree = ast.parse(source.read(), path)
    except (OSError, SyntaxError, ValueError):
        return ()  # nothing to go by: let multiprocessing have its say
    return tuple(
        (statement.lineno, statement.end_lineno or statement.lineno, _is_main_guard(statement))
        for statement in tree.body
    )


def _reimported_by_workers(main: ModuleType) -> bool:
    # multiprocessing runs a main module again in its workers, except a package's __main__.
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    return not (isinstance(name, str) and (name == "__main__" or name.endswith(".__main__")))


def _is_top_level_of(frame: FrameType, module: ModuleType) -> bool:
    return frame.f_code.co_name == "<module>" and frame.f_globals is module.__dict__


def _is_main_guard(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.If) or not isinstance(statement.test, ast.Compare):
        return False
    test = statement.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, *test.comparators]
    names = [side for side in sides if isinstance(side, ast.Name) and side.id == "__name__"]
    mains = [side for side in sides if isinstance(side, ast.Constant) and side.value == "__main__"]
    return len(names) == 1 and len(mains) == 1
