"""The names the documentation's code samples take as given, for the test that runs them.

Task functions live here, at module level, so worker processes can import them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import starlette.responses
from fastapi import FastAPI
from starlette.routing import BaseRoute

from offload import OffloadConfig


def send_mail(to: str, subject: str = "") -> None:
    """Stand-in for sending a mail."""


def render_pdf(order_id: int) -> bytes:
    """Stand-in for CPU-heavy rendering."""
    return str(order_id).encode()


async def notify(user: str) -> None:
    """Stand-in for a call to a notification service."""


@asynccontextmanager
async def app_lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    yield {}


to = "ada@example.com"
order_id = 42
routes: list[BaseRoute] = []
config = OffloadConfig()
app = FastAPI()
SomeFramework = SimpleNamespace(Response=starlette.responses.Response)
