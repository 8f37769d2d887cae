"""``vipflow worker`` (run the Celery worker) and ``vipflow tx show ID [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``worker`` and ``tx``."""
    worker: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help="run the Celery worker that decides and acts on notifications")
    worker.add_argument("--pool", help="worker pool (default: worker.pool)")
    worker.add_argument("--concurrency", type=int, help="threads/processes (default: worker.concurrency)")
    worker.add_argument("--queue", help="queue to consume (default: worker.queue)")
    worker.set_defaults(func=run_worker)

    tx: argparse.ArgumentParser = subparsers.add_parser("tx", help="inspect transaction records")
    tx_sub = tx.add_subparsers(dest="tx_command", required=True, metavar="ACTION")
    show = tx_sub.add_parser("show", help="show one transaction: notifications, decision, actions")
    show.add_argument("transaction_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print the record as JSON (masked)")
    show.set_defaults(func=run_tx_show)


def run_worker(args: argparse.Namespace) -> int:
    """Start Celery's worker with the configured pool, concurrency and queue; its exit code."""
    from worker.celery_app import create_celery
    from worker.config import load_settings
    from worker.logs import configure_logging
    from worker.metrics import cleanup_multiprocess, start_worker_metrics
    from worker.retention import ArchiveTrimmer
    from worker.store.archive import Archive
    from worker.store.connection import connect

    settings = load_settings(getattr(args, "config", None))
    configure_logging(settings.log.level)
    pool = args.pool or settings.worker.pool
    queue = args.queue or settings.worker.queue
    # Before the pool forks: prefork children must inherit the metrics directory.
    metrics_dir = start_worker_metrics(settings, pool, queue)
    ArchiveTrimmer(Archive(connect(settings.redis), settings.redis.key_prefix),
                   settings.archive.retention_days, settings.archive.trim_interval_s).start()
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
    """Print one transaction record, personal data masked; 1 when there is none."""
    from worker.config import load_settings
    from worker.masking import mask_mapping
    from worker.store.connection import connect
    from worker.store.records import RecordStore

    settings = load_settings(getattr(args, "config", None))
    store = RecordStore(connect(settings.redis), settings.redis.key_prefix)
    rec = store.load(args.transaction_id)
    if rec is None:
        print(f"vipflow: no record of transaction {args.transaction_id}", file=sys.stderr)
        return 1
    data = mask_mapping(rec.to_dict())
    for shown, action in zip(data.get("actions", ()), rec.actions, strict=False):
        shown["name"] = action.name  # an action name is a constant, but masking hides every "name" key
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(render(data))
    return 0


def _t(epoch: Any) -> str:
    try:
        value = float(epoch)
    except (TypeError, ValueError):
        return str(epoch)
    if value > 1e11:  # the archive stores milliseconds
        value /= 1000
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


def render(rec: dict[str, Any]) -> str:
    """A readable text view of a (masked) record."""
    lines = [f"transaction {rec['transaction_id']}  {rec.get('transaction_type') or '?'}  "
             f"amount {rec.get('amount') or '?'}  state {rec['state'].upper()}",
             f"deliveries {rec.get('deliveries', 0)}"]
    refs = {k: v for k, v in (rec.get("references") or {}).items() if v is not None}
    if refs:
        lines.append("references " + ", ".join(f"{k}={v}" for k, v in refs.items()))
    lines.append("notifications received:")
    for n in rec.get("notifications", ()):
        lines.append(f"  {_t(n['received_at'])}  {n['kind']:<8} {n['status']:<8} entry {n['entry_id']}")
    decision = rec.get("decision")
    if decision:
        lines.append(f"decision: {decision['outcome'].upper()} by ruleset {decision['ruleset']} "
                     f"v{decision['version']} ({decision['content_hash'][:12]})"
                     + (" [default: no rule matched]" if decision.get("used_default") else ""))
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
    if rec.get("review_reason"):
        lines.append(f"review: {rec['review_reason']}")
    lines.append("actions:")
    for a in rec.get("actions", ()):
        result = json.dumps(a["result"], default=str) if a.get("result") else ""
        lines.append(f"  {_t(a['at'])}  {a['name']:<16} {a['status']:<8} {result}")
    for e in rec.get("errors", ()):
        lines.append(f"error {_t(e.get('at'))}: {e.get('message')}")
    return "\n".join(lines)
