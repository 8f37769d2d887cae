"""The Celery envelope intake pushes, checked without Redis by filling its holes in Python."""

from __future__ import annotations

import base64
import json

from worker.store.taskmessage import TaskMessages


def fill(entry_id: str) -> dict[str, object]:
    p1, p2, p3 = TaskMessages("vipflow").parts()
    body = f'[["{entry_id}"], {{}}, {{"callbacks": null, "errbacks": null, "chain": null, "chord": null}}]'
    return dict(json.loads(p1 + base64.b64encode(body.encode()).decode() + p2 + f"['{entry_id}']" + p3))


def test_filled_envelope_is_json_naming_the_task_and_queue() -> None:
    """Filled in, the parts are one JSON envelope for process_notification on the queue."""
    message = fill("1763712345678-0")
    headers, props = message["headers"], message["properties"]
    assert isinstance(headers, dict) and isinstance(props, dict)
    assert headers["task"] == "vipflow.process_notification"
    assert headers["argsrepr"] == "['1763712345678-0']"
    assert props["delivery_info"] == {"exchange": "", "routing_key": "vipflow"}
    assert props["body_encoding"] == "base64"


def test_each_message_has_fresh_task_and_delivery_ids() -> None:
    """Two messages never share a task id or a delivery tag."""
    a, b = fill("1-0"), fill("1-0")
    assert a["headers"]["id"] != b["headers"]["id"]  # type: ignore[index]
    assert a["properties"]["delivery_tag"] != b["properties"]["delivery_tag"]  # type: ignore[index]
