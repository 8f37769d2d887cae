"""Replica acknowledgement: a notification is acknowledged only once a replica holds it too.

Redis replicates asynchronously: a master killed a millisecond after it
answered may take with it writes its replica never saw, and Sentinel then
promotes that replica. ``appendfsync always`` does not help there (the dead
master's disk is not the new master's). So with replicas, intake sends
``WAIT n timeout`` after its script, in the same pipeline (WAIT counts the
writes of its own connection), and answers 503 unless ``n`` replicas confirmed
within ``redis.replica_ack_timeout_ms``; VIP Connect then delivers again and
intake's de-duplication answers that delivery once the copy is made.

``n`` is ``redis.replica_acks`` (1 with sentinels, 0 without; see
``RedisSettings.wanted_replica_acks``) capped by the replicas connected now
(``ROLE``, read at most once a second and again after a short count): a master
whose only replica was just promoted away has nothing to wait for, and a
failover cannot lose what no replica was asked to hold (none could be
promoted over it). The figures of what is lost without WAIT are in the README.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from worker.errors import StoreError

ROLE_REFRESH_S = 1.0


class NotReplicated(StoreError):
    """The master stored the write, but fewer replicas than required confirmed it in time; ``result`` is what
    the script returned on the master."""

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result = result


class ReplicaAcks:
    """Runs intake's scripts followed by ``WAIT`` on the same connection (see the module docstring)."""

    def __init__(self, client: redis.Redis, wanted: int, timeout_ms: int):
        self._redis = client
        self.wanted = wanted
        self.timeout_ms = timeout_ms
        self._connected = wanted  # assume the configured count until ROLE says otherwise
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's result once ``min(wanted, connected replicas)`` replicas hold its writes.

        Raises redis.RedisError as the script would, and NotReplicated (a StoreError) when too few replicas
        confirmed within ``timeout_ms`` milliseconds.
        """
        if self.wanted == 0:
            return script(keys=keys, args=args)
        need = min(self.wanted, self._replicas())
        if need == 0:
            return script(keys=keys, args=args)
        try:
            result, acked = self._pipeline(script, keys, args, need)
        except NoScriptError:  # a new master (after a failover) has an empty script cache
            self._redis.script_load(script.script)
            result, acked = self._pipeline(script, keys, args, need)
        if int(acked) < need:
            now_connected = self._replicas(refresh=True)
            if int(acked) < min(self.wanted, now_connected):
                raise NotReplicated(
                    f"stored on the Redis master, but {int(acked)} of {need} replica(s) confirmed it within "
                    f"{self.timeout_ms} ms (redis.replica_ack_timeout_ms); answering 503 so that it is sent again",
                    result)
        return result

    def _pipeline(self, script: Script, keys: Sequence[Any], args: Sequence[Any], need: int) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", need, self.timeout_ms)  # type: ignore[no-untyped-call]  # redis-py: untyped
        return list(pipe.execute())

    def _replicas(self, refresh: bool = False) -> int:
        """Replicas connected to the master now (``ROLE``), read at most every ROLE_REFRESH_S seconds."""
        with self._lock:
            if not refresh and time.monotonic() - self._checked_at < ROLE_REFRESH_S:
                return self._connected
        role = self._redis.execute_command("ROLE")  # type: ignore[no-untyped-call]  # redis-py: untyped
        count = len(role[2]) if role and role[0] in (b"master", "master") else 0
        with self._lock:
            self._connected, self._checked_at = count, time.monotonic()
        return count
