"""Serving an ASGI app in tests: one request in-process that records when the response is
sent, or a real uvicorn server on 127.0.0.1. Also tasks that worker processes can import."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import uvicorn

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]

#: What :func:`call_once` appends once the last byte of the response body is sent.
SENT = "response sent"


async def call_once(app: ASGIApp, events: list[str], path: str = "/") -> None:
    """Send one GET request for ``path`` to ``app``, appending ``SENT`` to ``events`` when the
    response has been sent in full; tasks that append to ``events`` too show their order.

    The client never disconnects, so only the app decides when the call ends.
    """
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    request_sent = False

    async def receive() -> Message:
        nonlocal request_sent
        if request_sent:
            await anyio.sleep_forever()
        request_sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            events.append(SENT)

    await app(scope, receive, send)


@contextmanager
def serve(app: ASGIApp, *, timeout: float = 30, **options: Any) -> Iterator[str]:
    """Run ``app`` (its lifespan included) on a real uvicorn server on a free port of
    127.0.0.1, in a thread, and yield its base URL; stop it cleanly on exit.

    :param options: more of ``uvicorn.Config``'s settings, e.g. ``timeout_graceful_shutdown``
    :raises RuntimeError: if the server does not start or stop within ``timeout`` seconds
    """
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only then, else Nagle delays replies ~40 ms.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))  # port 0: the kernel picks a free one, with no race
    port = listener.getsockname()[1]
    # log_config=None: leave the test process's logging (and caplog) as it is.
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, lifespan="on", loop="asyncio", http="h11", **options)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the uvicorn server did not start; see the log above")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        listener.close()
        if thread.is_alive():
            raise RuntimeError(f"the uvicorn server did not stop within {timeout}s")


EXAMPLES = Path(__file__).parent.parent / "examples"


def post_to_example(module: str, path: str) -> str:
    """Import ``examples/<module>.py`` in a fresh interpreter, POST to ``path`` with a test
    client (the app's lifespan included), and return everything the program printed.

    A fresh interpreter, so the worker processes can import the example as users run it.
    """
    code = f"""
        import sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        from starlette.testclient import TestClient
        from {module} import app
        with TestClient(app) as client:
            response = client.post({path!r})
            print(response.status_code, response.text, flush=True)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def burn_cpu(seconds: float, started: str) -> int:
    """Keep one CPU busy for ``seconds`` in pure Python, after touching the file ``started``."""
    Path(started).touch()
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        count += 1
    return count
