"""examples/metrics_app.py on uvicorn: its /metrics counts the tasks its orders ran."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

import offload
import offload.metrics
from servers import EXAMPLES, serve


@pytest.mark.timeout(60)
def test_metrics_count_the_tasks_of_the_orders() -> None:
    sys.path.insert(0, str(EXAMPLES))  # the worker processes import the example by name
    try:
        import metrics_app

        with serve(metrics_app.app) as base, httpx.Client(base_url=base) as client:
            for order in range(3):
                assert client.post(f"/orders/{order}").status_code == 200
            deadline = time.monotonic() + 30
            while True:
                text = client.get("/metrics/").text
                done = 'offload_tasks_total{executor="process",status="succeeded"} 3.0'
                if done in text or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        assert done in text
        assert 'offload_tasks_total{executor="inline",status="succeeded"} 3.0' in text
        assert 'offload_tasks_in_flight{executor="process"} 0.0' in text
    finally:
        sys.path.remove(str(EXAMPLES))
        # The example installed them into the default registry: stop counting here.
        offload.remove_hooks(offload.metrics.install())
