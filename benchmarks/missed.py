"""Why a target was missed, and what that costs in practice: the notes beside the chart.

A note belongs to the rows whose description starts with its key; a missed row with no note
is listed all the same, asking for one. A note's fields are filled in from the figures of
the same run, so that its numbers are never stale:

- ``{offload}``, ``{anchor}``: the row's medians as the table shows them; ``{ratio}`` theirs;
- ``{extra}``: what offload adds, ``"17.9 µs"`` (the two medians' difference);
- ``{request}``, ``{request_sync}``: a whole request with 1 async (or sync) task through
  uvicorn on 127.0.0.1, with offload: the scale a per-request cost is to be read against.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from chart import Panel
from harness import format_ratio

TITLE = "### Missed targets"

#: Why, then what it means in practice.
NOTES: dict[str, tuple[str, str]] = {
    "ASGI call, no server: response + 1 async task": (
        "Starlette awaits the function right after the response. offload first makes a "
        "list of the one task, choosing its executor as it joins, and runs it through a "
        "task run: a cancel scope, so that a closing runtime or `offload.cancel()` can stop "
        "it; an entry in the runtime's status book, so that the task can be followed by id; "
        "its start time and outcome, for its report.",
        "that fixed cost is {extra} a request, which shows as {ratio} only because the bare "
        "cycle costs {anchor}. Through uvicorn on 127.0.0.1 the same request takes "
        "{request} and meets its target; over a real network a request takes milliseconds.",
    ),
    "ASGI call, no server: response + 1 sync task": (
        "The same fixed cost per list as the async row, plus the thread executor's own "
        "(see *thread dispatch of 1 task*), on top of a hop to a thread.",
        "{extra} a request; through uvicorn the same request takes {request_sync} and meets "
        "its target.",
    ),
    "thread dispatch of 1 task": (
        "A one-task list against a bare `anyio.to_thread.run_sync`: besides the list's run, "
        "the thread executor takes a token from a `CapacityLimiter` of its own (never from "
        "anyio's default one, which sync endpoints share) and records which run holds it, "
        "so that a timeout can name the hung tasks that hold `thread_limit`.",
        "{extra} a sync task, which goes to a thread because it blocks for much longer "
        "(a file, a sync client, a query).",
    ),
    "per inline task, lists of": (
        "Starlette's list awaits each function in a loop. offload also, for each task, "
        "chooses its executor as it joins, takes its start time, runs it through the code "
        "that applies timeouts, retries and the error policy, and keeps its outcome for its "
        "report.",
        "{extra} a task, where a task that does real work (a query, an e-mail) takes milliseconds.",
    ),
    "a list of 1 async task": (
        "The fixed cost of a list, paid once a request: the task run with its cancel scope, "
        "its entry in the status book (under a lock: sync endpoints read statuses from "
        "threads), and its place among the runs in flight that a shutdown drains. "
        "Starlette's list is a Python list and a loop.",
        "{extra} a request, against {request} for a whole request through uvicorn on 127.0.0.1.",
    ),
    'per inline task, concurrency="group"': (
        '`concurrency="group"` starts each task as an event-loop task of its own in the '
        "list's anyio task group, each in a cancel scope of its own so that "
        "`offload.cancel()` can stop it alone; the sequential list it is measured against "
        "runs its tasks one after another in one task.",
        "{extra} a task, worth paying when tasks wait on I/O: a group takes as long as its "
        "slowest task rather than the sum of all. For short tasks keep the default, "
        '`"sequential"`.',
    ),
    "process round trip of 1 trivial task": (
        "On top of the list's fixed cost, offload pickles the call as the task joins its "
        "list (so an unpicklable argument fails in the endpoint), gives the task an id, and "
        "borrows a worker for the run: each worker is a pool of one, so a crash or a "
        "timeout ends only its own task. The worker runs the call with the task's progress "
        "channel and trace context.",
        "{extra} a task, sent to a process because it holds the CPU for milliseconds to "
        "seconds (see the CPU tasks below).",
    ),
}

_REQUEST = "uvicorn + httpx on 127.0.0.1: request + 1 {} task"


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "(not measured)"


def section(panels: Sequence[Panel]) -> str:
    """Return the Markdown section on the missed targets of ``panels``; empty if none was."""
    bars = [bar for panel in panels for bar in panel.bars]
    missed = [bar for bar in bars if bar.met is False]
    if not missed:
        return ""
    requests = {
        key: glued(bar.offload)
        for bar in bars
        for key, kind in (("request", "async"), ("request_sync", "sync"))
        if bar.what.startswith(_REQUEST.format(kind))
    }
    lines = [
        TITLE,
        "",
        "Each row below missed its target in this run. Most measure a fixed cost of "
        "offload's, per task or per list, against an anchor that does next to nothing "
        "(a bare loop, a bare hop to a thread): microseconds, where a whole request "
        f"through uvicorn on 127.0.0.1 takes {requests.get('request', '(not measured)')}.",
        "",
    ]
    for bar in missed:
        offload, anchor = glued(bar.offload), glued(bar.anchor)
        shown = f"- **{bar.what}**: {offload} against {anchor} "
        shown += f"({format_ratio(bar.ratio)}, target {bar.target})."
        note = next((note for key, note in NOTES.items() if bar.what.startswith(key)), None)
        if note is None:
            lines.append(f"{shown} No note on this row yet: add one to `benchmarks/missed.py`.")
            continue
        extra = difference(bar.offload, bar.anchor)
        fields = _Fields(
            requests,
            offload=offload,
            anchor=anchor,
            ratio=format_ratio(bar.ratio),
            extra=f"{offload} against {anchor}" if extra is None else glued(extra),
        )
        why, practice = (part.format_map(fields) for part in note)
        lines.append(f"{shown} *Why:* {why} *In practice:* {practice}")
    return "\n".join(lines) + "\n"


def difference(offload: str, anchor: str) -> str | None:
    """``"17.9 µs"`` for ``"20.9 µs"`` and ``"3.0 µs"``; ``None`` if their units differ."""
    shown = [re.fullmatch(r"([0-9.,]+) (.+)", median) for median in (offload, anchor)]
    if shown[0] is None or shown[1] is None or shown[0][2] != shown[1][2]:
        return None
    first, second = (float(match[1].replace(",", "")) for match in shown if match is not None)
    return f"{first - second:.1f} {shown[0][2]}"


def glued(figure: str) -> str:
    """``figure`` with no-break spaces, so that a line never ends between ``17.9`` and ``µs``."""
    return figure.replace(" ", "\u00a0")


def replace_section(page: str, panels: Sequence[Panel]) -> str:
    """Return ``page`` with its section on missed targets made anew from ``panels``, right
    after the chart (where :func:`section` goes in a page that has none yet)."""
    new = section(panels)
    old = re.compile(rf"^{re.escape(TITLE)}\n.*?(?=^### |\Z)", re.M | re.S)
    if old.search(page):
        return old.sub(lambda _: f"{new}\n" if new else "", page, count=1)
    chart = re.compile(r"^!\[[^\]]*\]\(img/[^)]+\)\n\n", re.M)
    return chart.sub(lambda match: f"{match[0]}{new}\n" if new else match[0], page, count=1)
