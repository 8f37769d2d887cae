"""Celery task messages built for the intake script, so archive and enqueue are one atomic step.

Celery's broker here is the store's own Redis (``worker.celery_app`` uses
``redis.url`` for both), and a task on the Redis transport is one JSON
envelope LPUSHed onto the list named after the queue. Intake's Lua script
pushes that envelope in the same step as it archives the body, which removes
both the window between "archived" and "queued" and Celery's per-publish cost
(measured at ~0.47 ms a call, a third of the ingestor's budget at 1,000 req/s).

The envelope is exactly what ``app.send_task(TASK_NAME, args=[entry_id],
kwargs={}, queue=...)`` writes (Celery message protocol v2, kombu Redis
transport, base64 body). Only the entry id is unknown until the script runs
XADD, so Python builds the envelope around two holes and Lua fills them.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass

# The same name as ``worker.celery_app.TASK_NAME`` (a test holds them equal);
# not imported from there because that module imports Celery, which intake
# does not otherwise need.
TASK_NAME = "vipflow.process_notification"
_BODY, _ARGS = "\x00body\x00", "\x00args\x00"
_REPLY_TO = str(uuid.uuid4())

# Lua helpers for the intake script: base64 (Redis' Lua has none) and the
# envelope filled in with one entry id.
LUA_HELPERS = """
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {math.floor(n / 262144) % 64, math.floor(n / 4096) % 64,
               math.floor(n / 64) % 64, n % 64}
    local chunk = ''
    for j = 1, 4 do chunk = chunk .. string.sub(B64, q[j] + 1, q[j] + 1) end
    if not b then chunk = string.sub(chunk, 1, 2) .. '==' elseif not c then
      chunk = string.sub(chunk, 1, 3) .. '=' end
    out[#out + 1] = chunk
  end
  return table.concat(out)
end
local function task_message(id, p1, p2, p3)
  local body = '[["' .. id .. '"], {}, {"callbacks": null, "errbacks": null, ' ..
    '"chain": null, "chord": null}]'
  return p1 .. b64(body) .. p2 .. "['" .. id .. "']" .. p3
end
"""


@dataclass(frozen=True)
class TaskMessages:
    """Builds the envelope parts for ``process_notification(entry_id)`` on one queue."""

    queue: str
    task_name: str = TASK_NAME

    def parts(self) -> tuple[str, str, str]:
        """The envelope split around the base64 body and the argsrepr, with fresh ids."""
        task_id = str(uuid.uuid4())
        envelope = {
            "body": _BODY,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py", "task": self.task_name, "id": task_id, "shadow": None,
                "eta": None, "expires": None, "group": None, "group_index": None,
                "retries": 0, "timelimit": [None, None], "root_id": task_id,
                "parent_id": None, "argsrepr": _ARGS, "kwargsrepr": "{}",
                "origin": f"gen{os.getpid()}@{socket.gethostname()}", "ignore_result": None,
                "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
            },
            "properties": {
                "correlation_id": task_id, "reply_to": _REPLY_TO, "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": self.queue},
                "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
            },
        }
        text = json.dumps(envelope)
        p1, rest = text.split(json.dumps(_BODY), 1)
        p2, p3 = rest.split(json.dumps(_ARGS), 1)
        return p1 + '"', '"' + p2 + '"', '"' + p3
