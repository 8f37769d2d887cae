"""``vipflow worker`` (run the Celery worker) and ``vipflow tx show ID [--json] [--rules]``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.ledger import Ledger


def add_parser(subparsers: Any) -> None:
    """Register ``worker`` and ``tx``."""
    worker: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help="run the Celery worker that decides and acts on notifications")
    worker.add_argument("--pool", help="worker pool (default: worker.pool)")
    worker.add_argument("--concurrency", type=int, help="threads/processes (default: worker.concurrency)")
    worker.add_argument("--queue", help="queue to consume (default: worker.queue)")
    worker.set_defaults(func=run_worker)

    tx: argparse.ArgumentParser = subparsers.add_parser("tx", help="inspect transactions in the ledger")
    tx_sub = tx.add_subparsers(dest="tx_command", required=True, metavar="ACTION")
    show = tx_sub.add_parser("show", help="show one transaction: its state, decision, notifications and events")
    show.add_argument("transaction_id", metavar="ID")
    show.add_argument("--json", action="store_true",
                      help="print {record, events, notifications, rules?} as JSON (masked)")
    show.add_argument("--rules", action="store_true", help="also print the exact rule text that decided it")
    show.set_defaults(func=run_tx_show)


def run_worker(args: argparse.Namespace) -> int:
    """Start Celery's worker with the configured pool, concurrency and queue; its exit code."""
    from worker.celery_app import create_celery
    from worker.config import load_settings
    from worker.drain import Drainer
    from worker.ledger import Ledger
    from worker.logs import configure_logging
    from worker.masking import operator_hosts
    from worker.metrics import cleanup_multiprocess, start_worker_metrics
    from worker.store.archive import Archive
    from worker.store.connection import connect

    settings = load_settings(getattr(args, "config", None))
    configure_logging(settings.log.level, hosts=operator_hosts(settings))
    pool = args.pool or settings.worker.pool
    queue = args.queue or settings.worker.queue
    # Before the pool forks: prefork children must inherit the metrics directory.
    metrics_dir = start_worker_metrics(settings, pool, queue)
    ledger = Ledger.open(settings.database.url)  # SchemaOutdated stops the start, naming the command
    client = connect(settings.redis)
    Drainer(client, Archive(client, settings.redis.key_prefix), ledger, settings.redis.key_prefix,
            settings.ledger.drain_interval_s).start()
    app = create_celery(settings)
    import worker.celery_app as celery_app

    celery_app._app = app  # the task module registers on this app, not a second one
    argv = ["worker", "--pool", pool,
            "--concurrency", str(args.concurrency or settings.worker.concurrency),
            "--queues", queue,
            "--loglevel", settings.log.level, "--without-gossip", "--without-mingle"]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        if metrics_dir is not None:
            cleanup_multiprocess(metrics_dir)
    return 0


def run_tx_show(args: argparse.Namespace) -> int:
    """Print one transaction from the ledger, personal data masked; 1 when there is none or the
    ledger does not answer."""
    from worker.config import load_settings
    from worker.errors import LedgerError, LedgerUnavailable
    from worker.ledger import Ledger

    settings = load_settings(getattr(args, "config", None))
    ledger: Ledger | None = None
    try:
        ledger = Ledger.open(settings.database.url)
        view = tx_view(ledger, args.transaction_id, rules=bool(getattr(args, "rules", False)))
    except (LedgerUnavailable, LedgerError) as exc:
        print(f"vipflow: {exc}", file=sys.stderr)
        return 1
    finally:
        if ledger is not None:
            ledger.engine.dispose()
    if view is None:
        from sqlalchemy.engine import make_url

        where = make_url(settings.database.url).render_as_string(hide_password=True)
        print(f"vipflow: no record of transaction {args.transaction_id} in the ledger at {where}",
              file=sys.stderr)
        return 1
    if view["record"] is None:  # only notifications that were refused (invalid): nothing was decided
        notes = view["notifications"]
        if args.json:
            print(json.dumps(view, indent=2, default=str))
            return 0
        print(f"transaction {args.transaction_id}: no decision; the ledger holds {len(notes)} notification(s) "
              "that were refused at the door:")
        for n in notes:
            print(f"  {_t(n['received_at_ms'])}  {n['kind']:<8} {n['status']:<8} entry {n['entry_id']}  "
                  f"{n.get('route') or ''}  {n.get('error') or ''}")
        return 0
    if args.json:
        print(json.dumps(view, indent=2, default=str))
        return 0
    print(render(view["record"], view["events"], view["notifications"]))
    if "rules" in view:
        print(render_rules(view["record"], view["rules"]))
    return 0


def tx_view(ledger: Ledger, transaction_id: str, *, rules: bool = False) -> dict[str, Any] | None:
    """``{record, events, notifications}`` of one transaction (``rules`` too when asked: the rule text by
    the decision's content hash, None when the ledger lacks it), masked; None when the ledger knows
    nothing of it; ``record`` None when it holds only refused (invalid) notifications of it.

    Notification bodies are never included; rule text is the operator's, shown exactly.
    """
    from worker.masking import mask_mapping

    stored = ledger.load(transaction_id)
    if stored is None:
        notes = [{"entry_id": n.entry_id, "kind": n.kind, "status": n.status, "route": n.route,
                  "received_at_ms": n.received_at, "error": n.error} for n in ledger.notifications_of(transaction_id)]
        # An invalid notification never became a transaction, but the ledger keeps it: show it.
        return {"record": None, "events": [], "notifications": mask_mapping(notes)} if notes else None
    rec = stored.record
    record = mask_mapping(rec.to_dict())
    for shown, action in zip(record.get("actions", ()), rec.actions, strict=False):
        shown["name"] = action.name  # an action name is a constant, but masking hides every "name" key
    events = ledger.events(transaction_id)
    masked_events = mask_mapping([e.to_dict() for e in events])
    for shown, event in zip(masked_events, events, strict=True):
        shown["name"] = event.name
    notes = mask_mapping([{"entry_id": n.entry_id, "kind": n.kind, "status": n.status, "route": n.route,
                           "received_at_ms": n.received_at, "error": n.error}
                          for n in ledger.notifications_of(transaction_id)])
    view: dict[str, Any] = {"record": record, "events": masked_events, "notifications": notes}
    if rules:
        content_hash = (rec.decision or {}).get("content_hash")
        view["rules"] = ledger.ruleset(str(content_hash)) if content_hash else None
    return view


def _t(epoch: Any) -> str:
    try:
        value = float(epoch)
    except (TypeError, ValueError):
        return str(epoch)
    if value > 1e11:  # the archive stores milliseconds
        value /= 1000
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


def render(rec: dict[str, Any], events: list[dict[str, Any]] | None = None,
           notifications: list[dict[str, Any]] | None = None) -> str:
    """A readable text view of a (masked) record; with the ledger's ``events`` and ``notifications``
    (see :func:`tx_view`) these replace the record's own action and notification lists."""
    lines = [f"transaction {rec['transaction_id']}  {rec.get('transaction_type') or '?'}  "
             f"amount {rec.get('amount') or '?'}  state {str(rec['state']).upper()}",
             f"deliveries {rec.get('deliveries', 0)}"]
    refs = {k: v for k, v in (rec.get("references") or {}).items() if v is not None}
    if refs:
        lines.append("references " + ", ".join(f"{k}={v}" for k, v in refs.items()))
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
        if events is not None:
            lines.append(f"  rules hash {decision['content_hash']} (the text: vipflow tx show ID --rules)")
        for m in decision.get("matched", ()):
            lines.append(f"  matched {m['id']} -> {m['outcome']}: {m.get('description', '')}")
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


def _event_line(e: dict[str, Any]) -> str:
    step = " ".join(str(p) for p in (e.get("name"), e.get("status")) if p)
    data = e.get("data") or {}
    if e.get("kind") == "decided":  # the decision is shown above; its facts are in --json
        d = data.get("decision") or {}
        shown = (f"outcome {d.get('outcome')}, matched [{', '.join(str(m.get('id')) for m in d.get('matched', ()))}],"
                 f" ruleset {d.get('ruleset')} v{d.get('version')} ({str(d.get('content_hash'))[:12]})")
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
