"""What the fork server leaves behind, and how offload clears it.

multiprocessing starts one fork server per process, with its socket in a temporary
directory (``pymp-*``) that only a clean interpreter exit removes. A server that ends by a
signal (uvicorn re-raises SIGTERM after its shutdown; the out-of-memory killer sends
SIGKILL) never runs that exit, so each restart would leave a directory behind. So the
process executor stops the fork server, and removes the directory, when it closes; and if
the server dies while workers run, the workers remove it (see :mod:`._lifeline`).

This reaches into two private parts of multiprocessing, the fork server singleton and the
finalizer of its temporary directory, the same on Python 3.11 to 3.13; where they are
missing, nothing is cleared and the rest still works.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from multiprocessing import forkserver, util
from multiprocessing.context import BaseContext

#: How long closing waits for the fork server to exit. It exits once every process holding
#: its "alive" pipe has: a process that a task started and detached into a session of its
#: own would hold it forever, and must not hang the shutdown of the server.
STOP_TIMEOUT = 2.0


def temporary_directory(context: BaseContext) -> str | None:
    """Return the directory of the fork server's socket, if ``context`` uses a fork server."""
    if context.get_start_method() == "forkserver":
        return util.get_temp_dir()
    return None


def stop() -> None:
    """Stop this process's fork server and remove its temporary directory, unless another
    process of this one (a pool that is not offload's) may still need them."""
    if multiprocessing.active_children():
        return
    stopper = threading.Thread(target=_stop, name="offload-fork-server-stop", daemon=True)
    stopper.start()
    stopper.join(STOP_TIMEOUT)


def _stop() -> None:
    server = getattr(forkserver, "_forkserver", None)
    stop_server = getattr(server, "_stop", None)
    if stop_server is None:
        return
    # At interpreter exit, multiprocessing's own exit may have removed the socket already.
    with contextlib.suppress(OSError):
        stop_server()
    remove_directory = getattr(util, "_remove_temp_dir", None)
    # Run the exit-time finalizer now, which also lets the next fork server make a new one.
    for finalizer in list(getattr(util, "_finalizer_registry", {}).values()):
        if getattr(finalizer, "_callback", None) is remove_directory:
            finalizer()
