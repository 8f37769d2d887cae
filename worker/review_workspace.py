"""The review workspace's service: the queue with claims and filters, deciding with roles, limits and
four eyes, revealing a masked field, all recorded in the ledger with the logged-in actor.

The pages (``producers.web.workspace``) are thin: they parse a form, call one function here, and
show the answer. Deciding goes through ``worker.review_service`` (the CLI's service: the same
transaction lock and the same idempotent approval) with a gate that checks, under that lock, the
user's role and limit (``worker.review_roles``), that nobody else holds a live claim, and four eyes.

Claims (``worker.review_claims``, re-exported here) are advisory for viewing and binding for deciding:
while Alice's claim is live, nobody else may approve or reject that transaction.

Reasons: a rejection or approval needs one of :data:`REASONS` (or ``other`` with free text), kept on the
ledger event with the free text; free text is masked wherever it is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation

from worker import review_service as rs
from worker.errors import InputError
from worker.ledger import TransactionRecord
from worker.ledger.states import State
from worker.masking import mask_text
from worker.pipeline import Deps
from worker.review_claims import claim, claim_holders, human_event, release, touch
from worker.review_roles import (
    Forbidden,
    Permission,
    Reviewer,
    check_decide,
    check_second_approval,
    needs_four_eyes,
    require,
)

# The short list of reasons a reviewer picks from (code -> label); "other" needs free text.
REASONS: dict[str, dict[str, str]] = {
    "approve": {
        "verified_patron": "patron verified (called or documents checked)",
        "known_pattern": "usual activity for this patron",
        "false_positive": "the rule's concern does not apply here",
        "other": "other (say why)",
    },
    "reject": {
        "suspected_fraud": "suspected fraud or account takeover",
        "patron_request": "the patron asked to cancel",
        "limits": "over the patron's or the operator's limits",
        "kyc": "identity or bank details do not check out",
        "other": "other (say why)",
    },
}
MAX_REASON_TEXT = 500


@dataclass(frozen=True)
class QueueFilter:
    """The queue's filters: type (deposit|withdraw), an amount range in dollars, a matched rule id, and
    ``claimed`` (``any``, ``me``, ``nobody``, or ``me_or_nobody``)."""

    transaction_type: str | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    rule: str | None = None
    claimed: str = "any"

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> QueueFilter:
        """From a page's query parameters; InputError naming a bad one."""
        def amount(name: str) -> Decimal | None:
            text = (params.get(name) or "").strip()
            if not text:
                return None
            try:
                value = Decimal(text)
            except InvalidOperation:
                raise InputError(f"{name}: {text!r} is not an amount of dollars") from None
            if not value.is_finite() or value < 0:
                raise InputError(f"{name}: {text!r} must be zero or more dollars")
            return value

        kind = (params.get("type") or "").strip() or None
        if kind not in (None, "deposit", "withdraw"):
            raise InputError(f"type: {kind!r} is not deposit or withdraw")
        claimed = (params.get("claimed") or "any").strip()
        if claimed not in ("any", "me", "nobody", "me_or_nobody"):
            raise InputError(f"claimed: {claimed!r} is not any, me, nobody or me_or_nobody")
        return cls(kind, amount("min"), amount("max"), (params.get("rule") or "").strip() or None, claimed)


@dataclass(frozen=True)
class QueueRow:
    """One queued transaction as the queue page shows it (``item``) and who holds a live claim on it."""

    item: rs.QueuedItem
    claimed_by: str | None


def _amount(text: str | None) -> Decimal | None:
    try:
        return Decimal(text) if text is not None else None
    except InvalidOperation:
        return None



def queue(deps: Deps, who: Reviewer, filters: QueueFilter, *, limit: int = 500) -> list[QueueRow]:
    """The queue, oldest first, filtered, with claims; at most ``limit`` rows."""
    items = rs.queued(deps.ledger, deps.settings.review.max_age_s, limit=5000)
    holders = claim_holders(deps, (i.transaction_id for i in items))
    rows = []
    for item in items:
        amount = _amount(item.amount)
        holder = holders.get(item.transaction_id)
        if filters.transaction_type and item.transaction_type != filters.transaction_type:
            continue
        if filters.min_amount is not None and (amount is None or amount < filters.min_amount):
            continue
        if filters.max_amount is not None and (amount is None or amount > filters.max_amount):
            continue
        if filters.rule and filters.rule not in item.matched:
            continue
        if filters.claimed == "me" and holder != who.actor:
            continue
        if filters.claimed == "nobody" and holder is not None:
            continue
        if filters.claimed == "me_or_nobody" and holder not in (None, who.actor):
            continue
        # A reason is free text (VIP's or the wallet's words may name the patron): masked, as the CLI does.
        rows.append(QueueRow(replace(item, reason=mask_text(item.reason)) if item.reason else item, holder))
        if len(rows) >= limit:
            break
    return rows



def claim_next(deps: Deps, who: Reviewer, filters: QueueFilter) -> str | None:
    """Claim the oldest queued transaction matching ``filters`` that nobody else holds and ``who`` may
    decide (within their limit; a senior also takes those awaiting a second approval by someone else);
    its id, or None when there is none."""
    require(who.role, Permission.CLAIM, "claim transactions")
    for row in queue(deps, who, replace(filters, claimed="me_or_nobody")):
        item = row.item
        try:
            check_decide(who, _amount(item.amount), deps.settings.review.reviewer_limit, "decide")
            if item.first_approver is not None:
                check_second_approval(who, item.first_approver)
        except Forbidden:
            continue
        try:
            claim(deps, who, item.transaction_id)
            return item.transaction_id
        except (Forbidden, rs.NotInReview):
            continue  # taken or settled meanwhile
    return None


_ACTS = {"approve": "an approval", "reject": "a rejection"}  # REASONS' verdicts as nouns, for messages


def _reason(verdict: str, code: str, text: str) -> tuple[str, dict[str, str]]:
    """The reason kept on the record ("label: text") and the note (the code); InputError when missing."""
    choices = REASONS[verdict]
    code = (code or "").strip()
    text = (text or "").strip()[:MAX_REASON_TEXT]
    if code not in choices:
        raise InputError(f"reason: pick one of {', '.join(choices)} ({_ACTS[verdict]} needs a reason)")
    if code == "other" and not text:
        raise InputError("reason: 'other' needs a few words saying why")
    label = choices[code]
    return (f"{label}: {text}" if text else label), {"reason_code": code}


def _holder_check(deps: Deps, who: Reviewer, transaction_id: str) -> None:
    holder = touch(deps, who, transaction_id)
    if holder is not None and holder != who.actor:
        raise Forbidden(f"transaction {transaction_id} is claimed by {holder}; only they may decide it while "
                        "their claim is live")


def approve(deps: Deps, who: Reviewer, transaction_id: str, code: str, text: str = "") -> TransactionRecord:
    """Approve as ``who``: through VIP Connect once, or, above ``review.four_eyes_amount`` without a
    standing first approval, a recorded first approval (the record's last action is then
    ``review_first``). Forbidden (role, limit, claim, the same person twice), InputError (reason),
    NotInReview, ReviewActionFailed as ``worker.review_service.approve``."""
    reason, note = _reason("approve", code, text)
    review = deps.settings.review

    def gate(rec: TransactionRecord) -> rs.GateAnswer:
        amount = _amount(rec.amount)
        _holder_check(deps, who, transaction_id)
        first = rs.first_approval(rec)
        if rec.state != State.REVIEW:  # an interrupted approval: reconciling it needs the same rights
            check_decide(who, amount, review.reviewer_limit, "approve")
            return rs.GateAnswer(True)
        if not needs_four_eyes(amount, review.four_eyes_amount):
            check_decide(who, amount, review.reviewer_limit, "approve")
            return rs.GateAnswer(True)
        if first is None:
            check_decide(who, amount, review.reviewer_limit, "approve")
            return rs.GateAnswer(False, {"four_eyes": "first"})
        check_second_approval(who, first)
        return rs.GateAnswer(True, {"four_eyes": "second", "first_approver": first})

    rec = rs.approve(deps, transaction_id, who.actor, reason, gate=gate, note=note)
    release(deps, who, transaction_id, record=False)  # decided (or handed on to the second approver)
    return rec


def command_line_gate(deps: Deps, actor: str, transaction_id: str) -> rs.Gate:
    """The gate of ``vipflow review approve``: the same four eyes as the workspace (above
    ``review.four_eyes_amount`` the command records a first approval unless a different actor's stands),
    and no approval while a workspace reviewer holds a live claim. The command-line actor (``ledger.actor``
    or the OS user) has no workspace role: whoever may run the command against the ledger may decide."""
    review = deps.settings.review

    def gate(rec: TransactionRecord) -> rs.GateAnswer:
        holder = claim_holders(deps, [transaction_id]).get(transaction_id)
        if holder is not None and holder != actor:
            raise Forbidden(f"transaction {transaction_id} is claimed by {holder} in the review workspace; "
                            "only they may decide it while their claim is live")
        if rec.state != State.REVIEW or not needs_four_eyes(_amount(rec.amount), review.four_eyes_amount):
            return rs.GateAnswer(True)
        first = rs.first_approval(rec)
        if first is None:
            return rs.GateAnswer(False, {"four_eyes": "first"})
        if first == actor:
            raise Forbidden("you gave the first approval; a second, different reviewer must give the second")
        return rs.GateAnswer(True, {"four_eyes": "second", "first_approver": first})

    return gate


def reject(deps: Deps, who: Reviewer, transaction_id: str, code: str, text: str = "") -> TransactionRecord:
    """Reject as ``who``, releasing any hold. Forbidden (role, limit, claim), InputError (reason),
    NotInReview, ReviewActionFailed as ``worker.review_service.reject``."""
    reason, note = _reason("reject", code, text)

    def gate(rec: TransactionRecord) -> rs.GateAnswer:
        _holder_check(deps, who, transaction_id)
        check_decide(who, _amount(rec.amount), deps.settings.review.reviewer_limit, "reject")
        return rs.GateAnswer(True)

    rec = rs.reject(deps, transaction_id, who.actor, reason, gate=gate, note=note)
    release(deps, who, transaction_id, record=False)
    return rec


def reveal(deps: Deps, who: Reviewer, transaction_id: str, field: str) -> None:
    """Record that ``who`` revealed the masked ``field`` (a key of the notification's body; never its value)
    of ``transaction_id``. Forbidden for a viewer; InputError for an empty field name."""
    require(who.role, Permission.REVEAL, "reveal personal data")
    field = (field or "").strip()
    if not field or len(field) > 64:
        raise InputError("field: name the masked field to reveal")
    human_event(deps, transaction_id, who, "reveal", {"field": field})
