"""Load for the failover tests: signed notifications sent as VIP Connect would, retried until acknowledged.

Each notification is a small ACH withdrawal or deposit of its own crowd patron
(its own VIP card, so velocity never interferes). A sender thread posts them at
a steady rate; a 5xx or no answer at all is tried again
after a pause, as VIP Connect retries, until ``deadline``. Every answer is kept
with the moments its request started and ended, so a test can tell what was
answered while no master was known.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import requests

from producers.sim.patrons import crowd_patron
from producers.sim.sender import build_notification
from worker.tokens import mint


@dataclass(frozen=True)
class Answer:
    """One HTTP attempt: which transaction, its status (0: no answer) and when (time.monotonic)."""

    transaction_id: str
    status: int
    started: float
    ended: float


@dataclass
class Load:
    """Sends ``count`` notifications to ``url`` (see the module docstring)."""

    url: str
    key: bytes
    issuer: str
    count: int
    rate: float
    prefix: str
    first_patron: int = 0
    answers: list[Answer] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def transaction_ids(self) -> list[str]:
        """Every transaction id this load sends."""
        return [f"{self.prefix}{i:05d}" for i in range(self.count)]

    def _body(self, i: int) -> tuple[str, bytes]:
        kind = "withdraw" if i % 2 else "deposit"
        note = build_notification(crowd_patron(self.first_patron + i), kind, Decimal("60.00"),
                                  transaction_id=f"{self.prefix}{i:05d}", bank_index=1)
        return kind, json.dumps(note).encode()

    def _send_until_acknowledged(self, i: int, deadline: float) -> None:
        kind, body = self._body(i)
        tx = f"{self.prefix}{i:05d}"
        session = requests.Session()
        while time.monotonic() < deadline:
            token = mint(self.key, self.issuer, "vip-api", 600)
            started = time.monotonic()
            try:
                status = session.post(f"{self.url}/vip/notify/{kind}", data=body, timeout=10,
                                      headers={"Authorization": f"Bearer {token}",
                                               "Content-Type": "application/json"}).status_code
            except requests.RequestException:
                status = 0
            with self._lock:
                self.answers.append(Answer(tx, status, started, time.monotonic()))
                if status == 200:
                    self.acknowledged.add(tx)
            if status == 200 or 400 <= status < 500:  # acknowledged, or refused for good
                return
            time.sleep(0.3)  # VIP Connect's retry, shortened
        session.close()

    def run(self, deadline_s: float, on_sent: Callable[[int], None] | None = None) -> None:
        """Send all (blocking): one every 1/rate seconds, each retried until acknowledged or ``deadline_s``
        from now; ``on_sent(i)`` after the i-th is handed out."""
        deadline = time.monotonic() + deadline_s
        with ThreadPoolExecutor(max_workers=16) as pool:
            start = time.monotonic()
            for i in range(self.count):
                pause = start + i / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the pacing of a steady rate, not a wait for a condition
                pool.submit(self._send_until_acknowledged, i, deadline)
                if on_sent is not None:
                    on_sent(i)

    def start(self, deadline_s: float) -> threading.Thread:
        """``run`` in a thread of its own (started)."""
        thread = threading.Thread(target=self.run, args=(deadline_s,), daemon=True)
        thread.start()
        return thread

    def statuses(self) -> dict[int, int]:
        """How many attempts got each status (0: no answer)."""
        out: dict[int, int] = {}
        for answer in list(self.answers):
            out[answer.status] = out.get(answer.status, 0) + 1
        return out
