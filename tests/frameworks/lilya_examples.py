"""Serving an example app of ``examples/`` (Lilya's, Ravyn's, Esmerald's) on uvicorn, in a
process of its own, as a user runs it, for the tests that keep the examples from rotting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import httpx

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


class Output:
    """What a server process prints, read as it comes."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def close(self) -> None:
        """Read what is left, once the process has ended, and close the stream."""
        self._thread.join(timeout=10)
        self._stream.close()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Wait until a printed line contains ``text``.

        :raises AssertionError: if none does within ``timeout`` seconds, showing the output
        """
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline:
                shown = "\n".join(self.lines)
                raise AssertionError(f"{text!r} not printed within {timeout}s:\n{shown}")
            time.sleep(0.02)


@contextmanager
def serve_example(module: str, timeout: float = 30) -> Iterator[tuple[str, Output]]:
    """Import ``examples/<module>.py`` in a new interpreter, serve its ``app`` with uvicorn on a
    free port of 127.0.0.1, and yield the base URL and the process's output. On exit, stop it
    as Ctrl+C does (the app's lifespan drains its tasks), and kill what is left.

    :raises AssertionError: if the server does not answer within ``timeout`` seconds
    """
    # Bound here and handed over, so the port is free and no other process can take it first.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    code = f"""
        import socket
        import sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        import uvicorn
        from {module} import app
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        server.run(sockets=[socket.socket(fileno={listener.fileno()})])
    """
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        pass_fds=[listener.fileno()],
        start_new_session=True,  # its worker processes too can be ended as one group
    )
    listener.close()
    assert process.stdout is not None
    output = Output(process.stdout)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_it_answers(url, process, output, timeout)
        yield url, output
    finally:
        _stop(process)
        output.close()


def _wait_until_it_answers(
    url: str, process: subprocess.Popen[str], output: Output, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                shown = "\n".join(output.lines)
                raise AssertionError(f"the example server did not start:\n{shown}") from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    # Whatever is left of its session (a stuck worker, say) goes too.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
