"""The worker's port answers /healthz and /readyz beside /metrics (worker.health), over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from worker.health import health_app, serve
from worker.heartbeat import Readiness


@pytest.fixture
def port_and_readiness() -> Iterator[tuple[int, Readiness]]:
    registry = CollectorRegistry()
    Counter("probe_total", "a probe", registry=registry).inc()
    readiness = Readiness()
    served = serve(0, "127.0.0.1", health_app(registry, readiness, interval_s=1.0))
    assert served is not None
    port, stop = served
    yield port, readiness
    stop()


def test_not_ready_until_the_consumer_runs_and_both_stores_answered(port_and_readiness: tuple[int, Readiness]) -> None:
    """/readyz is 503 naming every missing check, then 200 once the consumer runs and Redis and the ledger
    answered; /metrics is served beside it."""
    port, readiness = port_and_readiness
    base = f"http://127.0.0.1:{port}"
    answer = requests.get(base + "/readyz", timeout=5)
    assert answer.status_code == 503
    assert set(answer.json()["problems"]) == {"consumer", "redis", "ledger"}
    readiness.consumer, readiness.redis, readiness.ledger = True, None, None
    assert requests.get(base + "/readyz", timeout=5).json() == {"status": "ready"}
    readiness.ledger = "the ledger did not answer (Connection refused)"
    answer = requests.get(base + "/readyz", timeout=5)
    assert answer.status_code == 503 and answer.json()["problems"] == {
        "ledger": "the ledger did not answer (Connection refused)"}
    assert "probe_total 1.0" in requests.get(base + "/metrics", timeout=5).text


def test_healthz_fails_only_when_the_heartbeat_thread_stalls(port_and_readiness: tuple[int, Readiness]) -> None:
    """/healthz is 200 while the heartbeat ran within three intervals (stores down or not), 503 after."""
    port, readiness = port_and_readiness
    base = f"http://127.0.0.1:{port}"
    assert requests.get(base + "/healthz", timeout=5).status_code == 503  # never ran
    readiness.last_tick, readiness.redis = time.monotonic(), "Redis did not answer (Connection refused)"
    assert requests.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
    readiness.last_tick = time.monotonic() - 3.5
    answer = requests.get(base + "/healthz", timeout=5)
    assert answer.status_code == 503 and answer.json()["status"] == "stalled"


def test_an_ipv6_metrics_host_is_served() -> None:
    """worker.metrics_host "::1" binds an IPv6 socket (a plain WSGI server would refuse the address)."""
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    served = serve(0, "::1", health_app(CollectorRegistry(), None, interval_s=1.0))
    assert served is not None
    port, stop = served
    try:
        assert requests.get(f"http://[::1]:{port}/healthz", timeout=5).json() == {"status": "ok", "checks": "off"}
    finally:
        stop()
