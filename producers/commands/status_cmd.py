"""``vipflow status [--json]``: one screen saying whether the system is healthy (``worker.status``).

Thin: build the Redis client and the ledger from the configuration, call ``worker.status.gather``, print.
Exit 0 when nothing needs a person, 1 when something does (each problem printed with what to do; a
store that does not answer is one of them, the rest is still shown), 2 for a bad configuration or no
ledger where ``database.url`` points (as every command that reads the ledger; none is created): also when
the whole report is printed but a problem is the configuration's (``Problem.config``: a Redis database
number the server does not have, a Redis login refused, a PostgreSQL database that does not exist).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``status``."""
    status = subparsers.add_parser(
        "status", help="is the system healthy: Redis, the ledger, queue, unprocessed notifications, dead "
                       "letters, review queue, workers; exit 1 when something needs a person")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=status_cmd)


def status_cmd(args: argparse.Namespace) -> int:
    """Gather and print the status; 1 when it lists a problem."""
    from worker.config import load_settings
    from worker.ledger import Ledger
    from worker.ledger.schema import make_engine
    from worker.status import gather
    from worker.store.connection import connect

    settings = load_settings(getattr(args, "config", None))
    client = connect(settings.redis)
    # No schema check at open: an outdated schema is one of the things status reports.
    ledger = Ledger(make_engine(settings.database.url, pool_size=1, create=False))
    try:
        report = gather(settings, redis_client=client, ledger=ledger)
    finally:
        ledger.close()
        client.close()
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        for line in render(report.to_dict()):
            print(line)
    if report.misconfigured:
        return 2
    return 0 if report.healthy else 1


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render(r: dict[str, Any]) -> list[str]:
    """The report (``StatusReport.to_dict()``) as lines for people."""
    from worker.status import age_text

    lines = [f"vipflow status at {_when(r['at'])}: " + ("HEALTHY" if r["healthy"] else
                                                        f"{len(r['problems'])} PROBLEM(S) NEED A PERSON")]
    red = r["redis"]
    if red["answers"]:
        mem = red["used_memory_bytes"] / 2**20
        cap = f" of {red['maxmemory_bytes'] / 2**20:.0f} MiB" if red["maxmemory_bytes"] else " (no maxmemory)"
        lines.append(f"  Redis     {red['url']} (db {red['database']}, prefix {red['prefix']}): answers in "
                     f"{red['ping_ms']:.1f} ms; {mem:.1f} MiB{cap}, policy {red['maxmemory_policy']}, "
                     f"AOF {'on' if red['aof_enabled'] else 'off'}")
    elif red.get("misconfigured"):
        lines.append(f"  Redis     {red['url']} (db {red['database']}): BAD CONFIGURATION, fix "
                     f"{red['misconfigured']} ({red.get('error')})")
    else:
        lines.append(f"  Redis     {red['url']} (db {red['database']}): DOES NOT ANSWER ({red.get('error')})")
    led = r["ledger"]
    if led["answers"] and led.get("revision") is None:
        lines.append(f"  ledger    {led['url']} ({led['dialect']}): answers; NO SCHEMA: run vipflow db upgrade")
    elif led.get("misconfigured"):
        lines.append(f"  ledger    {led['url']} ({led['dialect']}): NO SUCH DATABASE ({led.get('error')}): "
                     f"create it (createdb) or fix {led['misconfigured']}")
    elif led["answers"]:
        lines.append(f"  ledger    {led['url']} ({led['dialect']}): answers; schema {led['revision']} "
                     f"(this vipflow: {led['head_revision']})")
    else:
        lines.append(f"  ledger    {led['url']} ({led['dialect']}): DOES NOT ANSWER ({led.get('error')})")
    if r["queue"]:
        lines.append(f"  queue     {r['queue']['name']}: {r['queue']['depth']} waiting")
    u = r["unprocessed"]
    lines.append(f"  unprocessed  {u['count']} archived and not finished"
                 + (f", oldest {age_text(u['oldest_age_s'])}, {u['older_than_limit']} older than "
                    f"{age_text(u['limit_s'])}" if u["count"] else "")
                 + (f"; the recovery sweep is watching {u['recovering']}" if u.get("recovering") else "")
                 + ("" if red["answers"] else " (the ledger's count only: Redis does not answer)"))
    if r["dead_letters"]:
        d = r["dead_letters"]
        lines.append(f"  dead letters {d['open']} open" + (f", oldest {age_text(d['oldest_age_s'])}"
                                                           if d["open"] else ""))
    if r["review"]:
        v = r["review"]
        lines.append(f"  review    {v['waiting']} waiting" + (
            f", oldest {age_text(v['oldest_age_s'])}, {v['overdue']} overdue (over "
            f"{age_text(v['overdue_after_s'])})" if v["waiting"] else ""))
    alive = sum(1 for w in r["workers"] if w["alive"])
    if not red["answers"]:
        lines.append("  workers   unknown: their heartbeats are in Redis, which could not be read")
    else:
        lines.append(f"  workers   {alive} alive" + (f", {len(r['workers']) - alive} missing"
                                                     if len(r["workers"]) > alive else ""))
    now = time.time()
    for w in r["workers"]:
        rules = ", ".join(f"{n} v{v.get('version')}" if isinstance(v, dict) else f"{n} {v}"
                          for n, v in sorted((w.get("rules") or {}).items())) or "-"
        state = ("ready" if w.get("ready") else "NOT READY") if w["alive"] else "MISSING"
        lines.append(f"    {w['id']:<28} {state:<9} pool {w.get('pool') or '-'} x {w.get('concurrency') or '-'}, "
                     f"queue {w.get('queue') or '-'}, rules {rules}, last heartbeat "
                     f"{age_text(now - w['last_heartbeat'])} ago")
    for warning in r["warnings"]:
        lines.append(f"  warning: {warning}")
    for p in r["problems"]:
        lines.append(f"  PROBLEM [{p['check']}] {p['problem']}; do: {p['action']}")
    return lines
