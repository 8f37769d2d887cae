"""`vipflow sim --send --file FILE`: one chosen notification, sent as it is and signed like the rest, to the
real ingestor; the answer is printed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from producers.sim.patrons import PREFERRED_GOOD
from producers.sim.sender import build_notification
from tests.integration.harness import ROOT, Stack, free_port
from worker.store.archive import Archive

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The real ingestor alone (nothing decides: the test reads what it stored)."""
    from tests.conftest import TEST_REDIS_URL

    s = Stack(TEST_REDIS_URL)
    try:
        s.start_ingest()
        yield s
    finally:
        s.stop()


def _send(stack: Stack, *args: str, target: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producers", "sim", "--send", *args,
                           "--target", target or stack.ingest_url], cwd=ROOT, env=stack.env, capture_output=True,
                          text=True, timeout=60, check=False)


def _file(tmp_path: Path, body: object) -> Path:
    path = tmp_path / "notification.json"
    path.write_text(json.dumps(body, default=str, indent=1), encoding="utf-8")
    return path


def test_the_file_is_sent_as_it_is_and_the_answer_printed(stack: Stack, tmp_path: Path) -> None:
    """The withdrawal in the file goes to the withdraw route with a valid signature: 200 printed, exit 0,
    and the ingestor stored exactly the file's bytes."""
    body = build_notification(PREFERRED_GOOD, "withdraw", Decimal("61.90"), transaction_id="sffile0001", pascal=False)
    path = _file(tmp_path, body)
    result = _send(stack, "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"200 from {stack.ingest_url}/vip/notify/withdraw\n")
    [stored] = Archive(stack.redis, stack.prefix).by_transaction("sffile0001")
    assert stored.body == path.read_bytes() and stored.kind == "withdraw"


def test_a_refused_notification_prints_the_ingestors_answer_and_exits_1(stack: Stack, tmp_path: Path) -> None:
    """A body the ingestor refuses (an amount that is not a number): its 422 and reason printed, exit 1."""
    body = build_notification(PREFERRED_GOOD, "deposit", Decimal("10.00"), transaction_id="sffile0002")
    path = _file(tmp_path, {**body, "Amount": "lots"})
    result = _send(stack, "--file", str(path))
    assert result.returncode == 1
    assert result.stdout.startswith("422 from ") and "amount" in result.stdout.lower()


def test_kind_chooses_the_route_when_the_body_does_not_say(stack: Stack, tmp_path: Path) -> None:
    """Without a TransactionType the route must be given: exit 2 naming --kind; with --kind it is sent."""
    body = build_notification(PREFERRED_GOOD, "deposit", Decimal("12.00"), transaction_id="sffile0003")
    body.pop("TransactionType")
    path = _file(tmp_path, body)
    refused = _send(stack, "--file", str(path))
    assert refused.returncode == 2 and "--kind deposit|withdraw|error" in refused.stderr
    sent = _send(stack, "--file", str(path), "--kind", "deposit")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith(f"200 from {stack.ingest_url}/vip/notify/deposit")


@pytest.mark.parametrize(("content", "problem"), [("{not json", "is not JSON"), ("[1, 2]", "one JSON object")])
def test_a_file_that_is_not_one_notification_is_refused(content: str, problem: str, stack: Stack,
                                                        tmp_path: Path) -> None:
    """A file that is not a JSON object is bad input: one line naming the file, exit 2, nothing sent."""
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    result = _send(stack, "--file", str(path))
    assert result.returncode == 2 and problem in result.stderr and str(path) in result.stderr


def test_no_ingestor_is_one_line_naming_the_url(stack: Stack, tmp_path: Path) -> None:
    """Nothing listening at --target: one line naming the URL and what to start, exit 1."""
    body = build_notification(PREFERRED_GOOD, "deposit", Decimal("10.00"), transaction_id="sffile0004")
    target = f"http://127.0.0.1:{free_port()}"
    result = _send(stack, "--file", str(_file(tmp_path, body)), target=target)
    assert result.returncode == 1
    assert result.stderr.startswith(f"vipflow: no answer from {target}/vip/notify/deposit (")
    assert "vipflow ingest" in result.stderr and result.stderr.count("\n") == 1
