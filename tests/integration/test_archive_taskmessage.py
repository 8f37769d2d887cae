"""Intake's own task messages on a real Redis: built by Celery and kombu, read back by them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import redis

from worker.celery_app import TASK_NAME, create_celery
from worker.config import RedisSettings, Settings
from worker.notification import decode_body, parse_notification
from worker.store import Intake, connect
from worker.store.taskmessage import TASK_NAME as INLINE_TASK_NAME
from worker.store.taskmessage import TaskMessages, read_task

pytestmark = pytest.mark.integration

BODY = b'{"TransactionId": "tx00000001", "Amount": "89.76", "VipCardNumber": "7210642759"}'
OTHER = b'{"TransactionId": "tx00000001", "Amount": "99.00", "VipCardNumber": "7210642759"}'


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis=RedisSettings(url=redis_url, key_prefix="t"))


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    c = connect(settings.redis)
    yield c
    c.close()


def accept(intake: Intake, raw: bytes) -> str:
    return intake.accept("deposit", raw, parse_notification(decode_body(raw), "deposit"), None).status


def test_task_name_matches_the_celery_app() -> None:
    """The task name intake writes is the one the Celery app registers."""
    assert INLINE_TASK_NAME == TASK_NAME


def test_first_delivery_pushes_one_message_and_duplicates_none(
    settings: Settings, client: redis.Redis
) -> None:
    """A body delivered three times leaves one task message on the queue list."""
    intake = Intake.from_settings(settings, client)
    assert [accept(intake, BODY) for _ in range(3)] == ["accepted", "duplicate", "duplicate"]
    assert client.llen(settings.worker.queue) == 1


def test_conflict_pushes_a_message_for_the_conflict_entry(
    settings: Settings, client: redis.Redis
) -> None:
    """A conflicting body is queued with the id of its own archive entry, status conflict."""
    intake = Intake.from_settings(settings, client)
    accept(intake, BODY)
    assert accept(intake, OTHER) == "conflict"
    newest = read_task(client.lindex(settings.worker.queue, 0))  # LPUSH: newest first
    assert newest is not None
    entry = intake.archive.get(newest[1][0])
    assert entry is not None and entry.status == "conflict" and entry.body == OTHER


def test_message_is_what_celery_send_task_writes_but_for_its_ids(settings: Settings, client: redis.Redis) -> None:
    """Intake's message equals one written by Celery's send_task (kombu's Redis transport) with the same
    argument, once the ids that are fresh in every message (task id, delivery tag) and the body's
    encoding (none instead of base64, a kombu transport option) are set aside."""
    intake = Intake.from_settings(settings, client)
    entry_id = intake.accept("deposit", BODY, parse_notification(decode_body(BODY), "deposit"), None).entry_id
    ours = json.loads(client.rpop(settings.worker.queue))
    app = create_celery(settings)
    app.send_task(TASK_NAME, args=(entry_id,), kwargs={}, queue=settings.worker.queue, retry=False,
                  ignore_result=True)
    theirs = json.loads(client.rpop(settings.worker.queue))
    theirs["body"] = base64.b64decode(theirs["body"]).decode()
    for message in (ours, theirs):
        message["properties"].pop("body_encoding")
        for fresh in ("delivery_tag", "correlation_id", "reply_to"):
            message["properties"].pop(fresh)
        for fresh in ("id", "root_id", "origin"):
            message["headers"].pop(fresh)
    assert ours == theirs


def test_each_message_has_fresh_task_and_delivery_ids(settings: Settings) -> None:
    """Two messages never share a task id or a delivery tag."""
    messages = TaskMessages.from_settings(settings)
    a, b = (json.loads(messages.envelope().fill("1-0")) for _ in range(2))
    assert a["headers"]["id"] != b["headers"]["id"]
    assert a["properties"]["delivery_tag"] != b["properties"]["delivery_tag"]
    assert a["headers"]["id"] == a["properties"]["correlation_id"] == a["headers"]["root_id"]


def test_template_filled_equals_a_message_built_whole_by_celery(settings: Settings) -> None:
    """The template, filled with given ids, is exactly the message Celery and kombu build with those ids."""
    messages = TaskMessages.from_settings(settings)
    envelope = messages.envelope()
    filled = json.loads(envelope.fill("1763712345678-12"))
    key, whole = messages.build(filled["headers"]["id"], filled["properties"]["delivery_tag"], "1763712345678-12")
    assert key == envelope.key == settings.worker.queue
    assert json.loads(whole) == filled


def test_kombu_decodes_the_message_to_the_entry_id(settings: Settings, client: redis.Redis) -> None:
    """Celery's own transport reads our message back as process_notification(entry_id)."""
    intake = Intake.from_settings(settings, client)
    raw = BODY
    entry_id = intake.accept("deposit", raw, parse_notification(decode_body(raw), "deposit"), None).entry_id
    app = create_celery(settings)
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(settings.worker.queue, no_ack=True)
        message = queue.get(timeout=2)
        assert message.headers["task"] == TASK_NAME
        assert message.decode()[0] == [entry_id]
        queue.close()


@pytest.mark.parametrize("entry_id", ["1-0", "1763712345678-0", "1763712345678-12", "1763712345678-123"])
def test_lua_fills_the_entry_id_as_python_does(client: redis.Redis, settings: Settings, entry_id: str) -> None:
    """The script's envelope for an id equals the envelope filled in Python, whatever the id's length."""
    from worker.store.taskmessage import LUA_HELPERS

    envelope = TaskMessages.from_settings(settings).envelope()
    script = LUA_HELPERS + "return task_message(ARGV[1], 2)"
    assert client.eval(script, 0, entry_id, *envelope.pieces).decode() == envelope.fill(entry_id)
