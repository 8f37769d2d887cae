"""Intake's own task messages on a real Redis: exactly what Celery would have queued."""

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
    newest = json.loads(client.lindex(settings.worker.queue, 0))  # LPUSH: newest first
    [entry_id], _, _ = json.loads(base64.b64decode(newest["body"]))
    entry = intake.archive.get(entry_id)
    assert entry is not None and entry.status == "conflict" and entry.body == OTHER


def test_message_has_the_shape_celery_send_task_writes(settings: Settings, client: redis.Redis) -> None:
    """The envelope has the same keys, headers and body as one written by send_task."""
    intake = Intake.from_settings(settings, client)
    accept(intake, BODY)
    ours = json.loads(client.rpop(settings.worker.queue))
    app = create_celery(settings)
    app.send_task(TASK_NAME, args=["1-0"], kwargs={}, queue=settings.worker.queue, retry=False)
    theirs = json.loads(client.rpop(settings.worker.queue))
    assert ours.keys() == theirs.keys()
    assert ours["headers"].keys() == theirs["headers"].keys()
    assert ours["properties"].keys() == theirs["properties"].keys()
    assert ours["headers"]["task"] == theirs["headers"]["task"]
    assert ours["properties"]["delivery_info"] == theirs["properties"]["delivery_info"]
    _, *rest = json.loads(base64.b64decode(ours["body"]))
    _, *their_rest = json.loads(base64.b64decode(theirs["body"]))
    assert rest == their_rest


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
def test_lua_base64_matches_python(client: redis.Redis, entry_id: str) -> None:
    """The script's base64 of the task body equals Python's, whatever the id's length."""
    from worker.store.taskmessage import LUA_HELPERS

    script = LUA_HELPERS + "return task_message(ARGV[1], '<', '|', '>')"
    message = client.eval(script, 0, entry_id).decode()
    encoded = message[1 : message.index("|")]
    expected = (
        f'[["{entry_id}"], {{}}, {{"callbacks": null, "errbacks": null, "chain": null, "chord": null}}]'
    )
    assert base64.b64decode(encoded).decode() == expected
