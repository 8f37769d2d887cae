"""Celery task messages built by Celery's and kombu's own code, for intake's atomic archive-and-enqueue.

Celery's broker here is the store's own Redis (``worker.celery_app`` uses
``redis.url`` for both), and a task on kombu's Redis transport is one JSON
envelope LPUSHed onto the list kombu names after the queue. Intake's Lua
script pushes that envelope in the same step as it archives the body, so a
notification is never archived unqueued (and ``worker.recovery`` re-queues
one whose message was lost later all the same).

Nothing of the wire format is written here. Per message, Celery builds the
task (``app.amqp.as_task_v2``) and sends it (``app.amqp.send_task_message``)
through a kombu ``Producer`` on kombu's Redis transport; the one change is the
transport's last step: its ``_put`` runs with a batch that keeps the list key
and the serialised envelope instead of sending them. The archive entry id, which
only the script learns (XADD), goes in as a marker string: the envelope is cut
at each marker and the script joins the pieces with the id. The transport's
``body_encoding`` is set to none for these messages (a kombu transport option;
the worker decodes a message by the encoding the message names), so the id sits
in clear and needs no base64 in Lua. A version of Celery or kombu that changes
the envelope changes it here too, and a worker of that version reads it.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.errors import StoreError, reason

if TYPE_CHECKING:
    from celery import Celery

    from worker.config import Settings

# The same name as ``worker.celery_app.TASK_NAME`` (a test holds them equal).
TASK_NAME = "vipflow.process_notification"
# Stands for the entry id while Celery and kombu build the message: letters and digits only, so neither
# repr nor JSON (twice: the body is a JSON string inside the JSON envelope) changes it.
_MARK = "vipflowentryid" + secrets.token_hex(8)
_TASK_MARK, _TAG_MARK = "vipflowtaskid" + secrets.token_hex(8), "vipflowdeliverytag" + secrets.token_hex(8)

# Lua for the intake script: the envelope from its pieces (ARGV from ``first``) joined by the entry id.
LUA_HELPERS = """
local function task_message(id, first)
  return table.concat({unpack(ARGV, first)}, id)
end
"""


@dataclass(frozen=True)
class Envelope:
    """One task message, cut where the entry id goes: LPUSH ``id.join(pieces)`` onto ``key``."""

    key: str
    pieces: tuple[str, ...]

    def fill(self, entry_id: str) -> str:
        """The envelope for ``entry_id`` (what the script pushes), for tests and non-Lua callers."""
        return entry_id.join(self.pieces)


class _Capture:
    """Stands in for kombu's publish batch: keeps what the transport would LPUSH."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, command: str, *args: Any) -> None:
        self.commands.append((command, args))


def _capture_transport() -> type:
    """kombu's Redis transport whose channel hands each message to a capture instead of Redis."""
    from kombu.transport import redis as kombu_redis

    class CapturingChannel(kombu_redis.Channel):
        captured = threading.local()

        next_tag = ""

        def _next_delivery_tag(self) -> str:
            return self.next_tag  # the tag TaskMessages.build was asked for (kombu's own is a fresh uuid)

        def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
            batch = _Capture()
            # kombu's own _put: its priority-to-list naming and its serialisation, sent to the batch.
            put: Any = super()._put  # kombu's hints stop short of its transports' internals
            put(queue, message, _publish_batch=batch)
            self.captured.commands = batch.commands

    class CapturingTransport(kombu_redis.Transport):
        Channel = CapturingChannel

    return CapturingTransport


class TaskMessages:
    """Builds ``process_notification(entry_id)`` messages for one queue with Celery's and kombu's code.

    Celery and kombu build the envelope once per process, with markers where the message's own ids go
    (the task id, kombu's delivery tag, the entry id); each message then gets fresh ids in those places
    (Celery's full path costs ~0.3 ms a message, a third of the ingestor's budget). Before the template
    is used, one message built entirely by Celery and kombu with known ids is compared with the template
    filled with the same ids: any other difference (a new per-message field in another version) stops
    intake with StoreError rather than queue a message Celery would not have written. The kombu channel
    connects to Redis once (kombu's Redis channel checks the server when it is made), lazily; StoreError
    when it cannot. Thread-safe.
    """

    def __init__(self, app: Celery, queue: str):
        self._app = app
        self.queue = queue
        self._lock = threading.Lock()
        self._template: tuple[str, str] | None = None  # the list key and the envelope with markers
        self._producer: Any = None
        self._channel_: Any = None
        self._conn: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskMessages:
        """Messages for ``worker.queue`` on the configured broker (``redis.url``)."""
        from worker.celery_app import create_celery

        return cls(create_celery(settings), settings.worker.queue)

    def build(self, task_id: str, delivery_tag: str, entry_id: str) -> tuple[str, str]:
        """One message built entirely by Celery and kombu: (the list key, the envelope kombu would LPUSH)."""
        producer, channel = self._channel()
        amqp = self._app.amqp
        message = amqp.as_task_v2(task_id, TASK_NAME, args=(entry_id,), kwargs={}, ignore_result=True)
        channel.next_tag = delivery_tag
        # declare=[]: nothing declared (a Redis write); retry=False: nothing to wait for.
        amqp.send_task_message(producer, TASK_NAME, message, queue=self.queue, retry=False, declare=[])
        commands, channel.captured.commands = channel.captured.commands, []
        pushes = [args for command, args in commands if command == "lpush"]
        if len(commands) != 1 or len(pushes) != 1:
            raise StoreError(f"kombu's Redis transport wrote {[c for c, _ in commands]} for one task, not one "
                             "LPUSH; this version of kombu is not one vipflow supports")
        key, payload = pushes[0]
        return str(key), payload if isinstance(payload, str) else bytes(payload).decode()

    def envelope(self) -> Envelope:
        """A fresh message (new task id and delivery tag) around the entry id's place."""
        from kombu.utils.uuid import uuid

        key, text = self._template or self._make_template()
        text = text.replace(_TASK_MARK, uuid()).replace(_TAG_MARK, uuid())
        return Envelope(key, tuple(text.split(_MARK)))

    def _make_template(self) -> tuple[str, str]:
        from kombu.utils.uuid import uuid

        with self._lock:
            if self._template is None:
                key, text = self.build(_TASK_MARK, _TAG_MARK, _MARK)
                if _MARK not in text or _TASK_MARK not in text or _TAG_MARK not in text:
                    raise StoreError("Celery's task message does not carry its ids where vipflow looked for them")
                task_id, tag, entry = uuid(), uuid(), "1700000000000-0"
                filled = text.replace(_TASK_MARK, task_id).replace(_TAG_MARK, tag).replace(_MARK, entry)
                if self.build(task_id, tag, entry) != (key, filled):
                    raise StoreError("Celery's task message changes in more than its ids from one message to "
                                     "the next; this version of Celery is not one vipflow supports")
                self._template = (key, text)
            return self._template

    def close(self) -> None:
        """Close the kombu connection (made on the first message); a later message opens it again."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = self._channel_ = self._producer = None

    def _channel(self) -> tuple[Any, Any]:
        if self._producer is None:
            from kombu.connection import Connection as KombuConnection

            connection: Any = KombuConnection  # partly typed upstream: called through Any
            conf = self._app.conf
            options = {**conf.broker_transport_options, "body_encoding": None, "max_retries": 0}
            try:
                conn = connection(conf.broker_url, transport=_capture_transport(), transport_options=options)
                channel = conn.channel()
            except Exception as exc:  # noqa: BLE001 (kombu and redis raise many types; all mean "no broker")
                raise StoreError(f"cannot prepare task messages: the broker failed ({reason(exc)}); "
                                 "check that Redis is up") from None
            self._conn, self._channel_, self._producer = conn, channel, self._app.amqp.Producer(channel)
        return self._producer, self._channel_


def read_task(raw: bytes | str) -> tuple[str, list[Any]] | None:
    """The task name and positional arguments of one queued message (kombu's Redis envelope), decoded by
    kombu's own codecs (either body encoding: ours, none; a worker's own retries, base64); None when it is
    not a Celery task message this process can read."""
    from kombu.serialization import loads as kombu_loads
    from kombu.transport.virtual.base import Channel
    from kombu.utils.json import loads as kombu_json_loads

    loads: Any = kombu_loads  # partly typed upstream: called through Any
    json_loads: Any = kombu_json_loads
    codecs: Any = Channel.codecs

    try:
        envelope = json_loads(raw)
        props, headers = envelope.get("properties") or {}, envelope.get("headers") or {}
        body = envelope["body"]
        encoding = props.get("body_encoding")
        if encoding and encoding.lower() != "utf-8":
            body = codecs[encoding].decode(body)
        args, _kwargs, _embed = loads(body, envelope.get("content-type"), envelope.get("content-encoding"),
                                      accept={"application/json"})
        return str(headers["task"]), list(args)
    except Exception:  # noqa: BLE001 (anything unreadable is "not ours"; the caller counts it)
        return None
