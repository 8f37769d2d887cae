"""``vipflow rules report``: each rule's matches, outcomes, precision and recall against the outcome labels.

Thin: parse, call ``worker.labels.report.rules_report``, print a table per ruleset (all its versions)
and per ruleset version, or JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

REPORT_HELP = """For each rule: how often it matched, the outcomes of the decisions it matched in
(and how many it caused: its own outcome won), the amounts, and its precision and recall against
the outcome labels (`vipflow labels import`); per ruleset over all its versions, then per ruleset
version (shadow versions too). Each transaction first received in the window counts once, with the
decision it was acted on and its latest label.

A label is bad (an ACH return R01..R85, a chargeback, confirmed_fraud) or good (confirmed_good);
unlabelled transactions count for matches and amounts only. Over the labelled transactions of the
scope (the version, or the ruleset):
  a rule that rejects or reviews says "bad":
    precision = bad it matched / labelled it matched; recall = bad it matched / all bad
  a rule that approves says "good":
    precision = good it matched / labelled it matched; recall = good it matched / all good
'-' (null in JSON) when the denominator is 0. (default) is the decisions no rule matched."""


def add_report(sub: Any) -> None:
    """Register ``rules report`` on the ``rules`` subparsers."""
    report = sub.add_parser("report", help="per rule and ruleset version: matches, outcomes, precision and recall "
                                           "against the outcome labels", description=REPORT_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("--since", metavar="TIME", help="transactions first received at or after this ISO time "
                                                        "(a date alone is midnight; no offset: UTC)")
    report.add_argument("--until", metavar="TIME", help="transactions first received at or before this ISO time")
    report.add_argument("--json", action="store_true", help="one JSON document")
    report.set_defaults(func=report_cmd)


def report_cmd(args: argparse.Namespace) -> int:
    """Print the report; exit 2 on a bad --since/--until or no ledger."""
    from worker.config import load_settings
    from worker.labels.report import rules_report
    from worker.ledger import Ledger
    from worker.replay import SelectionError, parse_time

    since_ms = parse_time(args.since, "--since") if args.since else None
    until_ms = parse_time(args.until, "--until") if args.until else None
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise SelectionError("--until", f"{args.until} is before --since {args.since}")
    settings = load_settings(getattr(args, "config", None))
    with Ledger.open(settings.database.url, create=False) as ledger:
        report = rules_report(ledger.engine, since_ms=since_ms, until_ms=until_ms).to_dict()
    if args.json:
        print(json.dumps(report))
        return 0
    _print(report)
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _labels(counts: dict[str, int], limit: int = 4) -> str:
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} {v}" for k, v in top[:limit])
    return shown + (f", +{len(top) - limit} more" if len(top) > limit else "")


def _print(report: dict[str, Any]) -> None:
    from producers.commands.output import console

    out = console(soft_wrap=True)
    out.print(f"{report['transactions']:,} decided transactions, {report['labelled']:,} labelled"
              + ("" if report["labelled"] else " (record labels with `vipflow labels import FILE.csv`)"))
    for scope in report["rulesets"]:
        _scope(scope, f"ruleset {scope['ruleset']}, all versions")
    live = Counter(s["ruleset"] for s in report["versions"] if s["role"] == "live")
    live_texts = {(s["ruleset"], s["content_hash"]) for s in report["versions"] if s["role"] == "live"}
    for scope in report["versions"]:
        title = f"ruleset {scope['ruleset']} v{scope['version']} (sha256 {str(scope['content_hash'])[:12]})"
        if scope["role"] == "live" and live[scope["ruleset"]] == 1:
            out.print(f"\n[bold]{title}[/]: the only live version of {scope['ruleset']}: as above")
            continue
        if scope["role"] == "shadow" and (scope["ruleset"], scope["content_hash"]) in live_texts:
            out.print(f"\n[bold]{title}[/], shadow: the same text as the live version, so the same figures")
            continue
        _scope(scope, title + (", shadow: decided beside the live rules, never acted on"
                               if scope["role"] == "shadow" else ""))


def _scope(scope: dict[str, Any], title: str) -> None:
    from rich.table import Table

    from producers.commands.output import console, print_table

    d, f, a = scope["decided"], scope["flagged"], scope["approved"]
    o = d["outcomes"]
    out = console(soft_wrap=True)
    out.print()
    out.print(f"[bold]{title}[/]: {d['matched']:,} decided, {d['amount']} "
              f"(approve {o['approve']:,}, review {o['review']:,}, reject {o['reject']:,}); "
              f"labelled {d['labelled']:,}: {d['bad']:,} bad ({d['bad_amount']}), {d['good']:,} good")
    out.print(f"  flagged (review or reject): precision {_pct(f['precision'])}, recall {_pct(f['recall'])}; "
              f"approved: precision {_pct(a['precision'])}, recall {_pct(a['recall'])}; "
              f"bad approved: {a['bad']:,}, {a['bad_amount']}"
              + (f" ({_labels(a['bad_labels'])})" if a["bad_labels"] else ""))
    table = Table(box=None, pad_edge=False)
    for name, justify in (("rule", "left"), ("outcome", "left"), ("matched", "right"), ("amount", "right"),
                          ("caused", "right"), ("approve/review/reject", "right"), ("labelled", "right"),
                          ("bad", "right"), ("bad amount", "right"), ("good", "right"), ("precision", "right"),
                          ("recall", "right"), ("bad labels", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "bad labels")  # type: ignore[arg-type]
    for r in scope["rules"]:
        ro = r["outcomes"]
        table.add_row(r["rule"], r["outcome"], f"{r['matched']:,}", r["amount"], f"{r['caused']:,}",
                      f"{ro['approve']}/{ro['review']}/{ro['reject']}", f"{r['labelled']:,}", f"{r['bad']:,}",
                      r["bad_amount"], f"{r['good']:,}", _pct(r["precision"]), _pct(r["recall"]),
                      _labels(r["bad_labels"]))
    print_table(table)
