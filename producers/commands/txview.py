"""What ``vipflow tx show`` and ``vipflow review show`` print: one transaction from the ledger, masked.

Patrons' personal data is masked (``worker.masking``); vipflow's own vocabulary
(action and event names, states, actors, rule ids) is never passed through the
masking, so it cannot be hidden by it. Money is shown with two decimals.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from producers.commands.output import plural
from rules.money import format_amount

if TYPE_CHECKING:
    from worker.ledger import Ledger
    from worker.store.archive import ArchivedNotification


def _notes(stored: list[ArchivedNotification], names: frozenset[str]) -> list[dict[str, Any]]:
    from worker.masking import mask_mapping

    return [{"entry_id": n.entry_id, "kind": n.kind, "status": n.status, "route": n.route,
             "received_at_ms": n.received_at, "error": mask_mapping(n.error, names)}
            for n in stored]


def _names(stored: list[ArchivedNotification]) -> frozenset[str]:
    """The patron's first and last names as the transaction's notifications give them: masked wherever
    they appear in free text (VIP's error messages, the wallet's), whatever else recognises names."""
    from worker.masking_people import names_in
    from worker.notification import decode_body

    names: set[str] = set()
    for note in stored:
        with contextlib.suppress(Exception):  # an unreadable body names nobody; the view is shown anyway
            names |= names_in(decode_body(note.body))
    return frozenset(names)


def _amounts(data: Any) -> Any:
    """``data`` with every ``amount``/``balance`` value shown with two decimals (results of actions, VIP's
    and the wallet's answers)."""
    if isinstance(data, dict):
        return {k: format_amount(v) if k in _MONEY_KEYS and isinstance(v, str | int | float) and
                not isinstance(v, bool) else _amounts(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_amounts(v) for v in data]
    return data


_MONEY_KEYS = {"amount", "balance", "Amount", "Balance"}


def _facts(facts: Any, names: frozenset[str]) -> Any:
    """Stored facts, masked, money (as the catalogue types it) with two decimals."""
    from rules.catalogue import FACTS
    from worker.masking import mask_mapping

    if not isinstance(facts, dict):
        return facts
    shown: dict[str, Any] = mask_mapping(facts, names)
    for fact in FACTS:
        if fact.type != "money":
            continue
        *parents, leaf = fact.path.split(".")
        node: Any = shown
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(leaf) is not None:
            node[leaf] = format_amount(node[leaf])
    return shown


def tx_view(ledger: Ledger, transaction_id: str, *, rules: bool = False) -> dict[str, Any] | None:
    """``{record, events, notifications}`` of one transaction (``rules`` too when asked: the rule text by
    the decision's content hash, None when the ledger lacks it), masked, money with two decimals; None
    when the ledger knows nothing of it; ``record`` None when it holds only refused (invalid) notifications.

    Only what may carry a patron's data goes through the masking (references, facts, action results,
    event data, errors, review reasons), with the patron's first and last names from the transaction's
    notifications masked in all that free text too; names, kinds, states and actors are vipflow's own words.
    Notification bodies are never included; rule text is the operator's, shown exactly.
    """
    from worker.labels.store import LabelStore
    from worker.masking import mask_mapping

    received = ledger.notifications_of(transaction_id)
    names = _names(received)
    stored = ledger.load(transaction_id)
    if stored is None:
        notes = _notes(received, names)
        # An invalid notification never became a transaction, but the ledger keeps it: show it.
        return {"record": None, "events": [], "notifications": notes} if notes else None
    rec = stored.record
    record = rec.to_dict()
    record["amount"] = format_amount(rec.amount) if rec.amount is not None else None
    for key in ("references", "decision", "shadow_decision", "errors", "review_reason"):
        record[key] = mask_mapping(record[key], names)
    record["facts"] = _facts(record["facts"], names)
    for action in record["actions"]:
        action["result"] = _amounts(mask_mapping(action["result"], names))
    events = [e.to_dict() for e in ledger.events(transaction_id)]
    for event in events:
        event["data"] = _amounts(mask_mapping(event["data"], names))
    view: dict[str, Any] = {"record": record, "events": events, "notifications": _notes(received, names),
                            "labels": [lab.to_dict() for lab in LabelStore(ledger.engine).of(transaction_id)]}
    if rules:
        content_hash = (rec.decision or {}).get("content_hash")
        view["rules"] = ledger.ruleset(str(content_hash)) if content_hash else None
    return view


def render_refused(transaction_id: str, notes: list[dict[str, Any]]) -> str:
    """A transaction known only by notifications refused at the door (from :func:`tx_view`)."""
    lines = [f"transaction {transaction_id}: no decision; the ledger holds {plural(len(notes), 'notification')} "
             f"that {'was' if len(notes) == 1 else 'were'} refused at the door:"]
    for n in notes:
        lines.append(f"  {_t(n['received_at_ms'])}  {n['kind']:<8} {n['status']:<8} entry {n['entry_id']}  "
                     f"{n.get('route') or ''}  {n.get('error') or ''}".rstrip())
    return "\n".join(lines)


def render_facts(facts: Any, unasked: Any = ()) -> list[str]:
    """The facts the rules decided on (from :func:`tx_view`'s record), one line per source; the unknown
    ones named (a whole source as ``source.*``), and the sources not asked because no rule read them."""
    from rules.catalogue import FACTS

    if not isinstance(facts, dict):
        return []
    groups: dict[str, list[str]] = {}
    unknown: dict[str, list[str]] = {}
    for fact in FACTS:
        group, _, leaf = fact.path.rpartition(".")
        node: Any = facts
        for part in fact.path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            unknown.setdefault(group, []).append(fact.path)
            continue
        if fact.type == "bool":
            value = "true" if node else "false"
        elif fact.type == "money":
            value = format_amount(node)
        else:
            value = json.dumps(node) if isinstance(node, str) and " " in node else str(node)
        groups.setdefault(group, []).append(f"{leaf}={value}")
    lines = ["facts the rules decided on:"]
    lines += [f"  {group or 'notification'}: {' '.join(items)}" for group, items in groups.items()]
    gone = [f"{group}.*" if group and group not in groups else ", ".join(paths) for group, paths in unknown.items()]
    if gone:
        lines.append(f"  unknown: {', '.join(gone)}")
    if unasked:
        lines.append(f"  not asked (no rule reads them): {', '.join(f'{s}.*' for s in unasked)}")
    return lines


def _t(epoch: Any) -> str:
    try:
        value = float(epoch)
    except (TypeError, ValueError):
        return str(epoch)
    if value > 1e11:  # the archive stores milliseconds
        value /= 1000
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


_PATRON_SOURCES = {"notification": "its PatronId", "session": "the session opened for this transaction id",
                   "ledger": "the VIP card's patron learned from earlier notifications",
                   "wallet": "the wallet's answer for the VIP card"}


def _session_line(session: dict[str, Any]) -> str:
    """What the decision knew of the patron session (sessions opened through `vipflow web`)."""
    required = " (sessions required)" if session.get("required") else ""
    if not session.get("found"):
        return f"session: none issued for this transaction id{required}"
    return (f"session: {session.get('transaction_type') or '?'} of {format_amount(session.get('amount'))}, "
            f"opened {session.get('age_s')} s before the notification{required}")


def render(rec: dict[str, Any], events: list[dict[str, Any]] | None = None,
           notifications: list[dict[str, Any]] | None = None) -> str:
    """A readable text view of a (masked) record; with the ledger's ``events`` and ``notifications``
    (see :func:`tx_view`) these replace the record's own action and notification lists."""
    lines = [f"transaction {rec['transaction_id']}  {rec.get('transaction_type') or '?'}  "
             f"amount {format_amount(rec.get('amount'))}  state {str(rec['state']).upper()}",
             f"deliveries {rec.get('deliveries', 0)}"]
    refs = {k: v for k, v in (rec.get("references") or {}).items() if v is not None}
    if refs:
        lines.append("references " + ", ".join(f"{k}={v}" for k, v in refs.items()))
    session = ((rec.get("facts") or {}).get("session") or {})
    if session.get("found") is not None or session.get("required"):
        lines.append(_session_line(session))
    source = next((a["result"]["patron_source"] for a in rec.get("actions", ())
                   if a.get("name") == "freeze" and (a.get("result") or {}).get("patron_source")), None)
    if source:
        lines.append(f"patron: found by {source} ({_PATRON_SOURCES.get(source, source)})")
    lines.append("notifications received:")
    if notifications is None:
        for n in rec.get("notifications", ()):
            lines.append(f"  {_t(n['received_at'])}  {n['kind']:<8} {n['status']:<8} entry {n['entry_id']}")
    else:
        for n in notifications:
            why = f"  ({n['error']})" if n.get("error") else ""
            lines.append(f"  {_t(n['received_at_ms'])}  {n['kind']:<8} {n['status']:<8} entry {n['entry_id']}"
                         f"  {n.get('route') or ''}{why}")
    decision = rec.get("decision")
    if decision:
        lines.append(f"decision: {decision['outcome'].upper()} by ruleset {decision['ruleset']} "
                     f"v{decision['version']} ({decision['content_hash'][:12]})"
                     + (" [default: no rule matched]" if decision.get("used_default") else ""))
        if decision.get("candidate_share") is not None:  # decided while a percentage rollout ran
            lines.append(f"  rollout side: {decision.get('side')} (rules.candidate_share "
                         f"{decision['candidate_share']} %)")
        if events is not None:
            lines.append(f"  rules hash {decision['content_hash']} (the text: vipflow tx show ID --rules)")
        if decision.get("lists"):  # the version of each list the rules decided with (vipflow lists show NAME)
            lines.append("  lists " + ", ".join(f"{name} v{version}"
                                                for name, version in sorted(decision["lists"].items())))
        for m in decision.get("matched", ()):
            lines.append(f"  matched {m['id']} -> {m['outcome']}: {m.get('description', '')}")
        lines.extend(render_facts(rec.get("facts"), rec.get("unasked")))
    else:
        lines.append("decision: none yet")
    shadow = rec.get("shadow_decision")
    if shadow:
        if shadow.get("outcome"):
            same = "same as live" if decision and shadow["outcome"] == decision["outcome"] else "DIFFERS from live"
            lines.append(f"shadow decision (never acted on): {shadow['outcome'].upper()} by ruleset "
                         f"{shadow['ruleset']} v{shadow['version']} ({shadow['content_hash'][:12]}), {same}")
            for m in shadow.get("matched", ()):
                lines.append(f"  shadow matched {m['id']} -> {m['outcome']}")
        else:
            lines.append(f"shadow decision: none ({shadow.get('error')})")
    if rec.get("review_reason") and rec.get("state") == "review":
        lines.append(f"review: {rec['review_reason']}")
    if events is not None:
        lines.append("events (seq, time, kind, step, actor, state after, data):")
        lines.extend(_event_line(e) for e in events)
        return "\n".join(lines)
    lines.append("actions:")
    for a in rec.get("actions", ()):
        result = json.dumps(a["result"], default=str) if a.get("result") else ""
        lines.append(f"  {_t(a['at'])}  {a['name']:<16} {a['status']:<8} {result}")
    for e in rec.get("errors", ()):
        lines.append(f"error {_t(e.get('at'))}: {e.get('message')}")
    return "\n".join(lines)


def render_labels(labels: list[dict[str, Any]]) -> str:
    """The outcome labels of a transaction (``tx_view``'s ``labels``), oldest first: the last is its label."""
    from worker.labels.codes import describe

    if not labels:
        return "labels: none (what happened after the decision: vipflow labels import)"
    lines = ["labels (what happened after the decision; the last is the transaction's label):"]
    for lab in labels:
        origin = f"{lab['source']} {lab['name']}" if lab.get("name") else lab["source"]
        lines.append(f"  {lab['occurred_on']}  {describe(lab['label'])}  recorded {_t(lab['at'])} by {lab['actor']} "
                     f"({origin})")
    return "\n".join(lines)


def _event_line(e: dict[str, Any]) -> str:
    step = " ".join(str(p) for p in (e.get("name"), e.get("status")) if p)
    data = e.get("data") or {}
    if e.get("kind") == "decided":  # the decision and its facts are shown above
        d = data.get("decision") or {}
        shown = (f"outcome {d.get('outcome')}, matched [{', '.join(str(m.get('id')) for m in d.get('matched', ()))}],"
                 f" ruleset {d.get('ruleset')} v{d.get('version')} ({str(d.get('content_hash'))[:12]})"
                 + (f", side {d.get('side')}" if d.get("candidate_share") is not None else ""))
    else:
        shown = json.dumps(data, default=str) if data else ""
    return (f"  #{e['seq']:<3} {_t(e['at'])}  {e['kind']:<11} {step:<24} {e.get('actor') or '-':<20} "
            f"-> {e['state']:<10} {shown}").rstrip()


def render_rules(rec: dict[str, Any], rules: dict[str, Any] | None) -> str:
    """The rule text that decided ``rec`` (from :func:`tx_view`), or why it cannot be shown."""
    content_hash = (rec.get("decision") or {}).get("content_hash")
    if content_hash is None:
        return "rules: no decision yet, so no rule text"
    if rules is None:
        return f"rules: the text of ruleset {content_hash} is not in the ledger (decided before the ledger kept it?)"
    return (f"rules: ruleset {rules['name']} v{rules['version']} from {rules['file']}, sha256 {rules['content_hash']},"
            f" first used {_t(rules['first_used_at'])}\n{rules['text'].rstrip()}")
