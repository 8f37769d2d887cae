"""worker.metrics_port: 0 is any free port (told in the log), off is no port (told in the log)."""

from __future__ import annotations

import logging

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from worker.config import Settings, WorkerSettings
from worker.metrics import serve, start_worker_metrics


def test_port_0_serves_on_a_free_port_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    """serve(0) answers /metrics on the port the OS chose and logs that port."""
    registry = CollectorRegistry()
    Counter("probe_total", "a probe", registry=registry).inc()
    with caplog.at_level(logging.INFO, logger="vipflow.metrics"):
        port = serve(0, "127.0.0.1", registry)
    assert port is not None and port > 0
    assert "probe_total 1.0" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert f"metrics on http://127.0.0.1:{port}/metrics" in caplog.text


def test_metrics_off_is_said_at_start(caplog: pytest.LogCaptureFixture) -> None:
    """With metrics_port off the worker serves nothing and says so, naming the setting."""
    with caplog.at_level(logging.INFO, logger="vipflow.metrics"):
        assert start_worker_metrics(Settings(worker=WorkerSettings(metrics_port=None)), "threads", "q") is None
    assert "metrics off (worker.metrics_port is off)" in caplog.text
