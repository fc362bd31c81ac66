"""status_app: the statuses of the active runtime's tasks over HTTP, as an ASGI app.

No web framework: it is mounted under any prefix of any ASGI app (Starlette's ``Mount``,
FastAPI's ``app.mount``), and answers JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._handles import cancel, status, statuses
from ._status import TaskStatus

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def status_app(*, expose_errors: bool = False) -> ASGIApp:
    """Return an ASGI app that shows and cancels the tasks of the active runtime.

    ``GET /`` lists the statuses kept, newest first; ``GET /{id}`` shows one (404 if
    unknown); ``DELETE /{id}`` cancels one (202; 404 if unknown; 409 if it has ended). It
    never shows a task's arguments.

    :param expose_errors: show each failed task's ``error`` (its exception's type and
        message, which may hold what a client should not see); ``null`` otherwise
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # a WebSocket: nothing to say over one
            await send({"type": "websocket.close", "code": 1000})
            return
        task_id = _relative_path(scope).strip("/")
        method = scope["method"]
        if method in ("GET", "HEAD"):
            if not task_id:
                body: object = [_as_json(found, expose_errors) for found in statuses()]
                await _answer(send, 200, body, head=method == "HEAD")
                return
            found = status(task_id)
            if found is None:
                await _answer(send, 404, {"detail": f"no task {task_id!r}"})
                return
            await _answer(send, 200, _as_json(found, expose_errors), head=method == "HEAD")
        elif method == "DELETE" and task_id:
            if cancel(task_id):
                await _answer(send, 202, {"id": task_id, "state": "cancelled"})
            elif status(task_id) is None:
                await _answer(send, 404, {"detail": f"no task {task_id!r}"})
            else:
                await _answer(send, 409, {"detail": f"task {task_id!r} has already ended"})
        else:
            allowed = "GET, HEAD, DELETE" if task_id else "GET, HEAD"
            await _answer(send, 405, {"detail": "method not allowed"}, allow=allowed)

    return app


def _relative_path(scope: Scope) -> str:
    # Mounted, the path may still hold the prefix the app is mounted under (its root_path).
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _as_json(found: TaskStatus, expose_errors: bool) -> dict[str, object]:
    progress = found.progress
    return {
        "id": found.id,
        "name": found.name,
        "executor": found.executor,
        "state": found.state,
        "progress": None
        if progress is None
        else {"done": progress.done, "total": progress.total, "message": progress.message},
        "attempts": found.attempts,
        "created_at": found.created_at,
        "started_at": found.started_at,
        "ended_at": found.ended_at,
        "error": found.error if expose_errors else None,
        "result": _json_or_none(found.result),
    }


def _json_or_none(value: object) -> object:
    # A result that JSON cannot carry is left out rather than shown some other way.
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


async def _answer(
    send: Send, status_code: int, body: object, *, head: bool = False, allow: str | None = None
) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else data})


async def _lifespan(receive: Receive, send: Send) -> None:
    # Served on its own, it has nothing to start or stop.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
