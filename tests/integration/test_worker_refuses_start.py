"""A worker whose configuration cannot work exits 2 at start, before it takes anything (issue 12, item 7)."""

from __future__ import annotations

import json
import sys
from decimal import Decimal

import pytest

from producers.sim.patrons import PREFERRED_GOOD
from producers.sim.sender import build_notification
from tests.integration.harness import Proc, Stack, wait_until

pytestmark = pytest.mark.integration


def _exited(proc: Proc, timeout_s: float = 40) -> int:
    code = wait_until(lambda: proc.process.poll() is not None and (proc.process.returncode,), timeout_s,
                      "the worker to exit")
    proc.stop()  # joins the output reader
    return int(code[0])


def _celery_worker(stack: Stack, **env: str) -> Proc:
    return Proc([sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads", "--concurrency",
                 "2", "-Q", stack.prefix, "--without-gossip", "--without-mingle", "--without-heartbeat"],
                {**stack.env, **env})


@pytest.mark.timeout(180)
def test_celery_worker_without_operator_id_exits_2_and_leaves_the_notification_to_a_good_worker(
        redis_url: str) -> None:
    """`celery -A worker worker` without vip.operator_id exits 2 naming the key, takes nothing, and the
    notification sent meanwhile is decided by the next good worker."""
    stack = Stack(redis_url)
    try:
        stack.start_sim()
        stack.start_ingest()
        answer = stack.notify("withdraw", build_notification(
            PREFERRED_GOOD, "withdraw", Decimal("25.00"), transaction_id="itnoop0001", bank_index=1))
        assert answer.status_code == 200
        wait_until(lambda: stack.redis.llen(stack.prefix) == 1, 10, "the task on the queue")

        bad = _celery_worker(stack, VIPFLOW_VIP__OPERATOR_ID="")
        assert _exited(bad) == 2, "\n".join(bad.lines[-30:])
        refusals = [line for line in bad.lines if "vip.operator_id" in line]
        assert len(refusals) == 1 and "cannot start" in refusals[0], "\n".join(bad.lines[-30:])
        assert not bad.saw(" ready."), "\n".join(bad.lines[-30:])
        assert stack.redis.llen(stack.prefix) == 1  # not taken: still on the queue
        assert stack.record("itnoop0001") is None

        stack.start_worker()
        rec = stack.wait_state("itnoop0001", ("approved", "captured", "review", "rejected"), timeout_s=60)
        assert rec["state"] in ("approved", "captured")
        assert rec["deliveries"] == 1
    finally:
        stack.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("env", "key"), [
    ({"VIPFLOW_VIP__OPERATOR_ID": ""}, "vip.operator_id"),
    ({"VIPFLOW_VIP__SECRET_KEY1": None}, "vip.secret_key1"),  # None: not set at all
    ({"VIPFLOW_RULES__PATH": "/nonexistent/vipflow-rules"}, "rules.path"),
])
def test_vipflow_worker_that_cannot_work_exits_2_with_one_line(redis_url: str, env: dict[str, str | None],
                                                               key: str) -> None:
    """`vipflow worker` without an operator id, a secret key or rules exits 2 with one line naming the key,
    before it logs that it starts (so before the drain, the expiry or the consumer)."""
    stack = Stack(redis_url)
    try:
        merged = {**stack.env, "VIPFLOW_WORKER__METRICS_PORT": "off", **env}
        proc = Proc([sys.executable, "-m", "producers", "worker", "--pool", "threads", "--queue", stack.prefix],
                    {k: v for k, v in merged.items() if v is not None})
        assert _exited(proc) == 2, "\n".join(proc.lines[-30:])
        lines = [line for line in proc.lines if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"vipflow: configuration: {key}: "), lines
        assert not any(_is_json(line) for line in lines)  # no "worker starting", no traceback
    finally:
        stack.stop()


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
