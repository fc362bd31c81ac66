"""A Starlette app whose background tasks are counted in Prometheus metrics.

Run it with ``python examples/metrics_app.py``; ``curl -X POST localhost:8000/orders/1`` a few
times, then ``curl localhost:8000/metrics`` shows ``offload_tasks_total``,
``offload_task_duration_seconds`` and the rest.
"""

from __future__ import annotations

import uvicorn
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

import offload
import offload.metrics
from offload import BackgroundTask
from offload.starlette import JSONResponse


def render_invoice(order_id: int) -> str:
    return f"invoice {order_id}"


async def send_receipt(order_id: int) -> None:
    pass


async def create_order(request: Request) -> Response:
    order_id = request.path_params["order_id"]
    return JSONResponse(
        {"order": order_id},
        backgrounds=[
            BackgroundTask(render_invoice, order_id).set(executor="process"),
            BackgroundTask(send_receipt, order_id),
        ],
    )


offload.metrics.install()  # into prometheus_client's default registry
app = Starlette(
    routes=[
        Route("/orders/{order_id:int}", create_order, methods=["POST"]),
        Mount("/metrics", make_asgi_app()),
    ],
    lifespan=offload.lifespan(),
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
