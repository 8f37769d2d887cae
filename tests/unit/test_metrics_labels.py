"""Worker metrics: counted where the work happens, with label values that never carry ids or personal data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from rules import load_rulebook
from tests.conftest import FIXTURES, ROOT
from worker.config import Settings
from worker.ledger import Ledger
from worker.metrics import NO_RULE, count_decision
from worker.pipeline import Deps, process
from worker.reload import RuleHolder
from worker.store.accounts import AccountCache
from worker.store.archive import Archive
from worker.store.locks import Locks
from worker.store.velocity import VelocityStore
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry
from worker.vip.timed import TimedVip
from worker.wallet.fake import InMemoryWallet

CARD = "7210695258"
PATRON = "P0001234"
PREFIX = "ml"
# What a label value may look like: outcomes, action names, results, endpoints, rule ids.
SAFE = re.compile(r"^[a-z][a-z0-9_.-]*$|^\(default\)$|^[1-5][0-9]{2}$")  # names; an HTTP status code


def _samples() -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for m in REGISTRY.collect() if m.name.startswith("vipflow_")
            for s in m.samples]


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def deps(redis_url: str, ledger: Ledger) -> Iterator[Deps]:
    client = redis.Redis.from_url(redis_url)
    body = json.loads((FIXTURES / "vip-connect" / "account-inquiry-response-preferred.json").read_text())
    vip = TimedVip(FakeVip({CARD: AccountInquiry.from_response(body)}))
    yield Deps(settings=Settings(), archive=Archive(client, PREFIX), ledger=ledger,
               locks=Locks(client, PREFIX, 30), accounts=AccountCache(client, PREFIX, 0),
               velocity=VelocityStore(client, PREFIX), vip=vip,
               wallet=InMemoryWallet({PATRON: Decimal("10000.00")}),
               rules=RuleHolder(ROOT / "rules" / "default", book=load_rulebook(ROOT / "rules" / "default")),
               sleep=lambda s: None)
    client.close()


def _archive(deps: Deps, kind: str, txid: str, amount: str, **changes: Any) -> str:
    name = "deposit-approval-request.json" if kind == "deposit" else "withdraw-approval-request.json"
    body: dict[str, Any] = json.loads((FIXTURES / "vip-connect" / name).read_text())
    if kind == "deposit":
        body.update(TransactionId=txid, Amount=amount, VipCardNumber=CARD, PatronId=PATRON, **changes)
    else:
        body.update(transactionId=txid, amount=amount, vipCardNumber=CARD, patronId=PATRON,
                    maskedBankAccountNumber="**1111", bankRoutingNumber="22222222", **changes)
    return deps.archive.append(kind, json.dumps(body).encode(), status="valid", transaction_id=txid, error=None)


def test_label_values_hold_no_ids_or_personal_data(deps: Deps) -> None:
    """After approvals, freezes, reviews and rejections, no label value names a transaction, entry or patron."""
    entries = [_archive(deps, "deposit", "mlidtx0001", "89.76"),
               _archive(deps, "withdraw", "mlidtx0002", "100.00"),
               _archive(deps, "withdraw", "mlidtx0003", "3000.00"),
               _archive(deps, "deposit", "mlidtx0004", "5.00")]
    for entry in entries:
        process(entry, deps)
    forbidden = ["mlidtx", CARD, PATRON, "Jane", "Doe", "Smith", "4045555555", "5135552222", "22222222",
                 "127.0.0.1", "192.168.1.1", *entries]
    samples = _samples()
    assert any(name == "vipflow_decisions_total" for name, _, _ in samples)
    for name, labels, _ in samples:
        for value in labels.values():
            if name.endswith("_bucket") and value == labels.get("le"):
                continue
            assert SAFE.match(value), (name, labels)
            assert not any(bad.lower() in value.lower() for bad in forbidden), (name, labels)


def test_a_decision_counts_once_and_each_matched_rule(deps: Deps) -> None:
    """An approved deposit adds one decision and one count for its matched rule."""
    before = _value("vipflow_decisions_total", ruleset="deposit", outcome="approve")
    rule_before = _value("vipflow_decision_rules_total", ruleset="deposit", outcome="approve",
                         rule="standard-deposit")
    entry = _archive(deps, "deposit", "mlcount001", "89.76")
    process(entry, deps)
    process(entry, deps)  # a redelivery decides nothing again
    assert _value("vipflow_decisions_total", ruleset="deposit", outcome="approve") == before + 1
    assert _value("vipflow_decision_rules_total", ruleset="deposit", outcome="approve",
                  rule="standard-deposit") == rule_before + 1


def test_no_matched_rule_is_counted_as_the_default() -> None:
    """A decision without matched rules is counted under rule '(default)'."""
    before = _value("vipflow_decision_rules_total", ruleset="withdraw", outcome="review", rule=NO_RULE)
    count_decision("withdraw", "review", [])
    assert _value("vipflow_decision_rules_total", ruleset="withdraw", outcome="review", rule=NO_RULE) == before + 1


def test_actions_and_vip_latency_are_counted(deps: Deps) -> None:
    """An approved withdrawal counts a freeze and an approval; VIP calls are timed by endpoint."""
    freeze = _value("vipflow_actions_total", action="freeze", result="done")
    approve = _value("vipflow_actions_total", action="approve", result="approved")
    timed = _value("vipflow_vip_call_seconds_count", endpoint="withdraw_approval")
    process(_archive(deps, "withdraw", "mlact0001", "100.00"), deps)
    assert _value("vipflow_actions_total", action="freeze", result="done") == freeze + 1
    assert _value("vipflow_actions_total", action="approve", result="approved") == approve + 1
    assert _value("vipflow_vip_call_seconds_count", endpoint="withdraw_approval") == timed + 1
