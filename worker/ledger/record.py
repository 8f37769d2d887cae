"""The transaction record: what vipflow knows and did about one VIP Connect transaction.

The in-memory view of one transaction, rebuilt from and written to the ledger
(``worker.ledger.writer`` turns each change into events). Money is kept as
strings, personal data is never kept (references are masked; the raw body is
the notification's, in the ledger's ``notifications`` table).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from worker.ledger.states import State, parse, transition


@dataclass(frozen=True)
class NotificationSeen:
    """One archived notification for this transaction (a duplicate adds another)."""

    entry_id: str
    kind: str
    status: str
    received_at: str


@dataclass(frozen=True)
class ActionEntry:
    """One step of an action: ``started`` is written before the side effect, ``done``/``failed`` after."""

    name: str  # freeze | approve | review | reject | release | fail
    status: str  # started | done | failed
    at: float
    result: Mapping[str, Any] | None = None
    state: str | None = None  # the transaction's state when the step was recorded (before any move it causes)


@dataclass(frozen=True)
class TransactionRecord:
    """Everything vipflow received, decided and did for one transaction id."""

    transaction_id: str
    transaction_type: str | None = None
    amount: str | None = None
    references: Mapping[str, str | None] = field(default_factory=dict)
    notifications: tuple[NotificationSeen, ...] = ()
    state: State = State.RECEIVED
    decision: Mapping[str, Any] | None = None
    shadow_decision: Mapping[str, Any] | None = None  # rules.shadow's decision: recorded, never acted on
    facts: Mapping[str, Any] | None = None
    unasked: tuple[str, ...] = ()  # sources not asked at decision time: no rule read them (facts unknown)
    actions: tuple[ActionEntry, ...] = ()
    deliveries: int = 0
    errors: tuple[Mapping[str, Any], ...] = ()
    review_reason: str | None = None
    created_at: float = 0.0
    delivered_at: float = 0.0  # when the latest delivery began (epoch seconds)
    decided_at: float = 0.0  # when the rules decided (epoch seconds)
    updated_at: float = 0.0
    # The JSON of decision, shadow_decision and facts (about 60 % of the stored record, unchanged after the
    # decision) with the three objects it was made from: reused by to_json while they are the same objects.
    # Carried to copies by dataclasses.replace; never compared, never shown, never stored.
    _decided_json: tuple[Any, Any, Any, str] | None = field(default=None, compare=False, repr=False)

    def last_action(self, name: str) -> ActionEntry | None:
        """The latest entry of action ``name``, or None when it never started."""
        for entry in reversed(self.actions):
            if entry.name == name:
                return entry
        return None

    def action_done(self, name: str) -> bool:
        """True when action ``name`` finished (successfully or not) and nothing restarted it."""
        last = self.last_action(name)
        return last is not None and last.status in ("done", "failed")

    def succeeded(self, name: str) -> bool:
        """True when action ``name``'s last step is ``done`` (it took effect; ``failed`` did not)."""
        last = self.last_action(name)
        return last is not None and last.status == "done"

    def with_action(self, name: str, status: str, result: Mapping[str, Any] | None = None) -> TransactionRecord:
        """A copy with one more action entry."""
        entry = ActionEntry(name=name, status=status, at=time.time(), result=result, state=str(self.state))
        return replace(self, actions=(*self.actions, entry))

    def moved(self, new: State) -> TransactionRecord:
        """A copy in state ``new``; IllegalTransition when the state machine forbids the move."""
        return replace(self, state=transition(self.state, new, self.transaction_id))

    def with_error(self, message: str) -> TransactionRecord:
        """A copy with one more error note (the message must already be free of personal data)."""
        return replace(self, errors=(*self.errors, {"at": time.time(), "message": message}))

    def with_notification(self, seen: NotificationSeen) -> TransactionRecord:
        """A copy listing ``seen`` once (a redelivered archive entry is not listed twice)."""
        if any(n.entry_id == seen.entry_id for n in self.notifications):
            return self
        return replace(self, notifications=(*self.notifications, seen))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: lists, not tuples (so masking and JSON tools walk every part)."""
        out: dict[str, Any] = json.loads(self.to_json())
        return out

    def to_json(self) -> str:
        """The stored form: compact JSON (money as strings).

        Written by hand rather than through ``dataclasses.asdict``, which deep-copies
        every nested mapping: the record is stored several times per transaction. The
        decision's part is encoded once per decision (records and their mappings are
        never changed in place: every change is a copy).
        """
        head = _ENCODER.encode({
            "transaction_id": self.transaction_id,
            "transaction_type": self.transaction_type,
            "amount": self.amount,
            "references": self.references,
            "notifications": [{"entry_id": n.entry_id, "kind": n.kind, "status": n.status,
                               "received_at": n.received_at} for n in self.notifications],
            "state": self.state,
        })
        cached = self._decided_json
        if (cached is None or cached[0] is not self.decision or cached[1] is not self.shadow_decision
                or cached[2] is not self.facts):
            decided = _ENCODER.encode({"decision": self.decision, "shadow_decision": self.shadow_decision,
                                       "facts": self.facts})[1:-1]
            cached = (self.decision, self.shadow_decision, self.facts, decided)
            object.__setattr__(self, "_decided_json", cached)
        tail = _ENCODER.encode({
            "unasked": list(self.unasked),
            "actions": [{"name": a.name, "status": a.status, "at": a.at, "result": a.result, "state": a.state}
                        for a in self.actions],
            "deliveries": self.deliveries,
            "errors": self.errors,
            "review_reason": self.review_reason,
            "created_at": self.created_at,
            "delivered_at": self.delivered_at,
            "decided_at": self.decided_at,
            "updated_at": self.updated_at,
        })
        return f"{head[:-1]},{cached[3]},{tail[1:]}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransactionRecord:
        """Rebuild from :meth:`to_dict`."""
        d = dict(data)
        d["notifications"] = tuple(NotificationSeen(**n) for n in d.get("notifications", ()))
        d["actions"] = tuple(ActionEntry(**a) for a in d.get("actions", ()))
        d["errors"] = tuple(d.get("errors", ()))
        d["unasked"] = tuple(d.get("unasked", ()))
        d["state"] = parse(str(d.get("state", State.RECEIVED)))
        return cls(**d)



def _json_default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a transaction record")


_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"))


def encode_json(value: Any) -> str:
    """Compact JSON of ``value`` the way records are stored (Decimal as strings)."""
    return _ENCODER.encode(value)
