"""Starlette's responses with offload's ``backgrounds=``, under the same names.

::

    from offload.starlette import JSONResponse

    return JSONResponse({"ok": True}, backgrounds=[BackgroundTask(render_pdf, 42)],
                        executor="process")

Each class is Starlette's own (``isinstance`` checks and FastAPI's ``response_class=``
keep working) with :class:`~offload.responses.BackgroundsMixin` in front.
"""

from __future__ import annotations

from ._exceptions import missing_extra

try:
    from starlette import responses as _starlette
except ImportError as exc:
    raise missing_extra("offload.starlette", "Starlette", "starlette", exc) from exc

from .responses import BackgroundsMixin

__all__ = [
    "FileResponse",
    "HTMLResponse",
    "JSONResponse",
    "PlainTextResponse",
    "RedirectResponse",
    "Response",
    "StreamingResponse",
]


class Response(BackgroundsMixin, _starlette.Response):
    """Starlette's ``Response`` whose background tasks run through offload."""


class PlainTextResponse(BackgroundsMixin, _starlette.PlainTextResponse):
    """Starlette's ``PlainTextResponse`` whose background tasks run through offload."""


class HTMLResponse(BackgroundsMixin, _starlette.HTMLResponse):
    """Starlette's ``HTMLResponse`` whose background tasks run through offload."""


class JSONResponse(BackgroundsMixin, _starlette.JSONResponse):
    """Starlette's ``JSONResponse`` whose background tasks run through offload."""


class RedirectResponse(BackgroundsMixin, _starlette.RedirectResponse):
    """Starlette's ``RedirectResponse`` whose background tasks run through offload."""


class StreamingResponse(BackgroundsMixin, _starlette.StreamingResponse):
    """Starlette's ``StreamingResponse``; its background tasks run through offload once the
    stream has ended."""


class FileResponse(BackgroundsMixin, _starlette.FileResponse):
    """Starlette's ``FileResponse``; its background tasks run through offload once the file
    has been sent."""
