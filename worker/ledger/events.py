"""Ledger events: what one change of a transaction record adds to its append-only log.

A :class:`~worker.ledger.record.TransactionRecord` only grows (notifications,
action steps and errors are appended; a decision is set, or cleared by a forced
replay that records a ``redecide`` step first), so the events of a write are the
difference between the record the ledger holds and the new one (:func:`diff`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from worker.ledger.record import TransactionRecord

Kind = Literal["received", "delivered", "decided", "action", "review", "human", "replay", "error",
               "dead_letter", "state"]
KINDS: tuple[Kind, ...] = ("received", "delivered", "decided", "action", "review", "human", "replay", "error",
                           "dead_letter", "state")
WORKER = "worker"  # the actor of everything the pipeline does on its own
# Action names that are a person's act, and the event kind of the others that are not plain actions.
HUMAN_ACTIONS = frozenset({"review_approve", "review_reject", "review_first"})
_KIND_OF_ACTION: dict[str, Kind] = {"review": "review", "redecide": "replay"}


@dataclass(frozen=True)
class NewEvent:
    """One event to append: ``at`` in epoch seconds; ``data`` JSON-ready and free of personal data."""

    kind: Kind
    at: float
    name: str | None = None
    status: str | None = None
    actor: str | None = WORKER
    data: Mapping[str, Any] | None = None
    state: str | None = None  # the transaction's state after this event (None: the write's final state)


@dataclass(frozen=True)
class Event:
    """One stored event, as readers see it."""

    transaction_id: str
    seq: int
    at: float
    kind: str
    name: str | None
    status: str | None
    state: str
    actor: str | None
    data: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"seq": self.seq, "at": self.at, "kind": self.kind, "name": self.name, "status": self.status,
                "state": self.state, "actor": self.actor, "data": dict(self.data) if self.data else None}


def diff(old: TransactionRecord | None, new: TransactionRecord) -> list[NewEvent]:
    """The events that turn ``old`` (None: nothing stored yet) into ``new``, in order, each with the state
    the transaction was in after it (a write may fold several steps and moves)."""
    events = _diff(old, new)
    # Each step knows the state it was taken in; the state after a step is the one the next step was
    # taken in, and after the last, the record's own.
    befores = [e.state for e in events]
    after = str(new.state)
    out = []
    for event, before in zip(reversed(events), reversed(befores), strict=True):
        out.append(replace(event, state=after))
        if before is not None:
            after = before
    return out[::-1]


def _diff(old: TransactionRecord | None, new: TransactionRecord) -> list[NewEvent]:
    now = time.time()
    out: list[NewEvent] = []
    was = str(old.state) if old is not None else "received"
    old_notes = old.notifications if old else ()
    for seen in new.notifications[len(old_notes):]:
        received_s = int(seen.received_at) / 1000 if str(seen.received_at).isdigit() else now
        out.append(NewEvent("received", received_s, data={"entry_id": seen.entry_id, "kind": seen.kind,
                                                   "status": seen.status}, state=was))
    if new.deliveries > (old.deliveries if old else 0):
        out.append(NewEvent("delivered", new.delivered_at or now, data={"deliveries": new.deliveries}, state=was))
    if new.decision is not None and (old is None or old.decision != new.decision):
        d = new.decision
        out.append(NewEvent("decided", new.decided_at or now, name=str(d.get("outcome")), data={
            "decision": d, "facts": new.facts, "unasked": list(new.unasked),
            "shadow_decision": new.shadow_decision}, state=was))
    for err in new.errors[len(old.errors) if old else 0:]:
        out.append(NewEvent("error", float(err.get("at", now)), data={"message": err.get("message")}))
    for step in new.actions[len(old.actions) if old else 0:]:
        result = dict(step.result) if step.result else None
        if step.name in HUMAN_ACTIONS:
            actor = str((result or {}).get("actor") or "unknown")
            out.append(NewEvent("human", step.at, step.name, step.status, actor, result, step.state))
        else:
            kind = _KIND_OF_ACTION.get(step.name, "action")
            actor = str((result or {}).get("actor") or WORKER)
            out.append(NewEvent(kind, step.at, step.name, step.status, actor, result, step.state))
    if not out and old is not None and old.state != new.state:
        out.append(NewEvent("state", now, data={"from": str(old.state), "to": str(new.state)}))
    return out
