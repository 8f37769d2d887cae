"""The stored form of a transaction record: ``to_json`` reuses the decision's JSON only while the
decision, shadow decision and facts are the same objects, and stays the plain compact encoding."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

from worker.ledger import State
from worker.ledger.record import TransactionRecord


def _decided() -> TransactionRecord:
    rec = TransactionRecord(transaction_id="tx-json-1", transaction_type="withdraw", amount="40.00",
                            references={"patron": "pa***01"}, created_at=1.5)
    rec = replace(rec, decision={"outcome": "approve", "rules": ["limits"]}, facts={"amount": Decimal("40.00")},
                  shadow_decision=None)
    return rec.moved(State.DECIDED).with_action("approve", "started")


def _plain(rec: TransactionRecord) -> str:
    # What the record's fields give encoded in one go, field order kept (the form before the reuse).
    return json.dumps(rec.to_dict(), separators=(",", ":"))


def test_stored_form_is_compact_json_in_field_order() -> None:
    rec = _decided()
    text = rec.to_json()
    data = json.loads(text)
    assert list(data)[:8] == ["transaction_id", "transaction_type", "amount", "references", "notifications",
                              "state", "decision", "shadow_decision"]
    assert data["facts"] == {"amount": "40.00"} and data["state"] == "decided"
    assert text == _plain(rec) and TransactionRecord.from_dict(data).to_json() == text


def test_copies_reuse_the_decision_until_it_changes() -> None:
    rec = _decided()
    rec.to_json()
    later = rec.moved(State.APPROVING).with_action("approve", "done").moved(State.APPROVED)
    assert json.loads(later.to_json())["decision"] == {"outcome": "approve", "rules": ["limits"]}
    assert json.loads(later.to_json())["state"] == "approved"
    changed = replace(later, decision={"outcome": "review"}, facts={"amount": "1.00"})
    data = json.loads(changed.to_json())
    assert data["decision"] == {"outcome": "review"} and data["facts"] == {"amount": "1.00"}
    assert changed.to_json() == _plain(changed)
    assert changed == replace(changed, _decided_json=None)  # never compared
    assert "_decided_json" not in repr(changed)
