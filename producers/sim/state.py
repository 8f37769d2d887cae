"""The VIP simulator's memory: transactions, approval counts, call counts and faults.

Faults (``POST /sim/faults``, or at start): ``error_rate`` (0..1, answers 500
before anything is recorded), ``latency_ms`` (added to every answer),
``timeout_ms`` (sleep that long before answering), ``hang_ms`` (how long the
scripted ``timeout``/``commit_then_timeout`` wait, default 3000), and
``scripted``: a list of ``{"transaction_id" (or "vip_card_number"), "endpoint":
"approve"|"lookup"|"account"|"session", "responses": [...]}``, each response consumed by
one call: a status (``500``; a 4xx answers VIP's error model), ``{"status": 400,
"body": {...}}`` (optionally ``"headers": {"Retry-After": "2"}``), ``"timeout"`` (hang, nothing recorded) or
``"commit_then_timeout"`` (record the approval, then hang). A bare scripted
entry may also be posted on its own.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.errors import ConfigError


def vip_error(code: int = 99, message: str = "Approval failed") -> dict[str, Any]:
    """A body in VIP Connect's error model."""
    return {
        "errorCode": code,
        "transactionStage": "Approval",
        "operatorErrorMessage": message,
        "operatorDeclineDescription": message,
        "patronErrorMessage": "Your transaction could not be completed.",
        "resolution": "Contact VIP Preferred customer service.",
    }


@dataclass
class Faults:
    """The faults in force."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    timeout_ms: float = 0.0
    hang_ms: float = 3000.0
    scripted: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    def update(self, data: dict[str, Any]) -> None:
        """Apply a faults document (see the module docstring); ConfigError on a bad value."""
        for name in ("error_rate", "latency_ms", "timeout_ms", "hang_ms"):
            if name in data:
                try:
                    value = float(data[name])
                except (TypeError, ValueError):
                    raise ConfigError(f"faults.{name}", "must be a number") from None
                if value < 0 or (name == "error_rate" and value > 1):
                    raise ConfigError(f"faults.{name}", "is out of range")
                setattr(self, name, value)
        entries = list(data.get("scripted") or [])
        if "responses" in data:
            entries.append(data)
        for entry in entries:
            key = str(entry.get("transaction_id") or entry.get("vip_card_number") or "")
            endpoint = str(entry.get("endpoint", "approve"))
            if not key or endpoint not in ("approve", "lookup", "account", "session"):
                raise ConfigError("faults.scripted",
                                  "needs transaction_id and endpoint approve|lookup|account|session")
            self.scripted.setdefault((endpoint, key), []).extend(entry.get("responses") or [])

    def to_dict(self) -> dict[str, Any]:
        """JSON form, for /sim/stats."""
        return {
            "error_rate": self.error_rate,
            "latency_ms": self.latency_ms,
            "timeout_ms": self.timeout_ms,
            "hang_ms": self.hang_ms,
            "scripted": [{"endpoint": e, "key": k, "responses": r} for (e, k), r in self.scripted.items() if r],
        }


class SimState:
    """Everything the VIP simulator remembers; guarded by one lock (handlers are async, stats are not)."""

    def __init__(self, start_faults: dict[str, Any] | None = None, seed: int | None = None):
        self._start = dict(start_faults or {})
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.reset()

    def reset(self) -> None:
        """Forget every transaction and count; faults back to those given at start."""
        with self.lock:
            self.approvals: Counter[str] = Counter()
            # When each transaction's first approval call arrived (epoch seconds, before any added
            # latency): the end of the benchmark's notification-to-approval latency.
            self.first_approval_at: dict[str, float] = {}
            self.calls: Counter[str] = Counter()
            self.transactions: dict[str, dict[str, Any]] = {}
            self.sessions: dict[str, dict[str, Any]] = {}  # patron sessions opened, by transaction id
            self.faults = Faults()
            self.faults.update(self._start)

    def next_scripted(self, endpoint: str, key: str) -> Any:
        """The next scripted response for this endpoint and key, or None."""
        with self.lock:
            queue = self.faults.scripted.get((endpoint, key))
            return queue.pop(0) if queue else None

    def random_error(self) -> bool:
        """True when the configured error rate says this call fails."""
        return self.faults.error_rate > 0 and self.rng.random() < self.faults.error_rate

    def record(
        self, kind: str, body: dict[str, Any], txid: str, *, approved: bool, error: dict[str, Any] | None = None,
        arrived_at: float | None = None,
    ) -> None:
        """Remember an approval (counted) or a refused one (FAILED); ``arrived_at`` (epoch seconds) is when
        the call came in, kept for the first approval of each transaction."""
        now = datetime.now(UTC).isoformat()
        with self.lock:
            if approved and arrived_at is not None:
                self.first_approval_at.setdefault(txid, arrived_at)
            entry = self.transactions.setdefault(txid, {"transactionId": txid, "transactionType": kind})
            for wire, name in (
                ("patronId", "patron_id"),
                ("vipCardNumber", "vip_card_number"),
                ("amount", "amount"),
                ("fundTransferType", "fund_transfer_type"),
            ):
                if body.get(name) is not None:
                    entry[wire] = body[name]
            entry.update(
                {
                    "requiresApproval": True,
                    "approvalCalledOn": now,
                    "notificationSentOn": entry.get("notificationSentOn"),
                    "warrantyMode": None,
                    "isWarrantied": False,
                }
            )
            if approved:
                self.approvals[txid] += 1
                entry.update({"approvalCompleted": True, "transactionStatus": "COMPLETE", "errorMessage": None})
            elif not self.approvals[txid]:
                entry.update(
                    {
                        "approvalCompleted": False,
                        "transactionStatus": "FAILED",
                        "errorMessage": (error or {}).get("operatorErrorMessage"),
                    }
                )

    def stats(self) -> dict[str, Any]:
        """Counts for /sim/stats."""
        with self.lock:
            return {
                "approvals": dict(self.approvals),
                "first_approval_at": dict(self.first_approval_at),
                "calls": dict(self.calls),
                "transactions": len(self.transactions),
                "faults": self.faults.to_dict(),
            }
