"""``vipflow status`` against a real ``vipflow worker``: healthy while it runs (its /healthz and /readyz
answer 200), exit 1 naming the missing worker once it is killed, exit 0 again after a clean stop."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from tests.integration.harness import Stack, free_port, wait_until
from tests.integration.vipflow_worker import start_vipflow_worker

pytestmark = pytest.mark.integration


def _status(stack: Stack) -> tuple[int, dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "producers", "status", "--json"], env=stack.env,
                          capture_output=True, text=True, timeout=60)
    assert done.stderr == "" or "warning" in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.mark.timeout(180)
def test_status_follows_a_real_worker(redis_url: str) -> None:
    """A running worker is alive and ready in the status (exit 0) and answers its probes; killed with
    SIGKILL it is reported missing (exit 1); a worker stopped with SIGTERM leaves no alarm."""
    stack = Stack(redis_url, VIPFLOW_WORKER__HEARTBEAT_INTERVAL_S="0.5")
    try:
        stack.start_sim()
        port = free_port()
        worker = start_vipflow_worker(stack, pool="threads", concurrency=2, metrics_port=port)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(base + "/readyz", timeout=2).ok, 20, "the worker's /readyz")
        assert requests.get(base + "/healthz", timeout=2).json() == {"status": "ok"}

        def healthy() -> dict[str, object] | None:
            code, report = _status(stack)
            return report if code == 0 else None

        report = wait_until(healthy, 30, "vipflow status to say healthy")
        (row,) = report["workers"]  # type: ignore[misc]
        assert row["alive"] and row["ready"] and row["pool"] == "threads" and row["concurrency"] == 2
        assert set(row["rules"]) == {"deposit", "withdraw"}

        worker.kill()

        def missing() -> dict[str, object] | None:
            code, report = _status(stack)
            return report if code == 1 else None

        report = wait_until(missing, 30, "vipflow status to report the killed worker")
        checks = {p["check"] for p in report["problems"]}  # type: ignore[union-attr]
        assert checks == {"workers"}, report["problems"]
        assert any("stopped beating" in p["problem"] for p in report["problems"])  # type: ignore[union-attr]

        stack.redis.delete(f"{stack.prefix}:workers", f"{stack.prefix}:workers:last")  # forget the killed one
        second = start_vipflow_worker(stack, pool="threads", concurrency=2, metrics_port=free_port())
        wait_until(healthy, 30, "vipflow status to say healthy with the second worker")
        second.stop()
        code, report = _status(stack)
        assert report["workers"] == [] and code == 1  # no worker: a problem, but nothing missing
        assert [p["check"] for p in report["problems"]] == ["workers"]  # type: ignore[union-attr]
        assert "no worker is alive" in report["problems"][0]["problem"]  # type: ignore[index]
    finally:
        stack.stop()
