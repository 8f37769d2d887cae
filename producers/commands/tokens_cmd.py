"""``vipflow tokens create|list|revoke``: the operator site's API tokens.

A token is printed once, by ``create``; the ledger keeps only its sha256. Creating and revoking
are recorded with the command-line actor (``ledger.actor``, else the operating-system user).
Exit 2 on a bad name or scope, a name in use, or no such token; 1 when the ledger failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

SCOPES = ("sessions", "status", "labels")  # worker.ledger.api_tokens.SCOPES, without importing the ledger


def add_parser(subparsers: Any) -> None:
    """Register ``tokens`` and its three subcommands."""
    tokens = subparsers.add_parser("tokens", help="API tokens for the operator site (vipflow web)")
    sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="a new token, printed once")
    create.add_argument("name", help="what the token is for (letters, digits, . _ -), recorded with each use")
    create.add_argument("--scope", action="append", required=True, choices=SCOPES,
                        help="what it may do (repeat for several): sessions, status, labels")
    create.set_defaults(func=create_cmd)
    ls = sub.add_parser("list", help="every token (never the token itself), its scopes and last use")
    ls.add_argument("--json", action="store_true", help="JSON lines, one per token")
    ls.set_defaults(func=list_cmd)
    revoke = sub.add_parser("revoke", help="revoke a token: it gets 401 from then on")
    revoke.add_argument("name")
    revoke.set_defaults(func=revoke_cmd)


def _store(args: argparse.Namespace, create: bool) -> tuple[Any, Any]:
    from worker.config import load_settings
    from worker.ledger import Ledger
    from worker.ledger.api_tokens import TokenStore

    settings = load_settings(getattr(args, "config", None))
    ledger = Ledger.open(settings.database.url, create=create)
    return settings, (ledger, TokenStore(ledger.engine))


def _run(args: argparse.Namespace, work: Any, *, create: bool = False) -> int:
    from worker.errors import LedgerUnavailable
    from worker.ledger.actor import cli_actor
    from worker.ledger.api_tokens import TokenRefused

    settings, (ledger, store) = _store(args, create)  # only `create` may start a new ledger
    try:
        return int(work(store, cli_actor(settings)))
    except TokenRefused as exc:
        print(f"vipflow tokens: {exc}", file=sys.stderr)
        return 2
    except LedgerUnavailable as exc:
        print(f"vipflow tokens: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.close()


def create_cmd(args: argparse.Namespace) -> int:
    """Create the token and print it once (stdout: the token alone, so a script can take it)."""
    def work(store: Any, actor: str) -> int:
        token = store.create(args.name, args.scope, actor)
        print(token)
        print(f"token {args.name!r} created with scopes {' '.join(sorted(set(args.scope)))}; it is shown only "
              "now: keep it in the operator site's secrets", file=sys.stderr)
        return 0
    return _run(args, work, create=True)


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def list_cmd(args: argparse.Namespace) -> int:
    """One line per token: name, scopes, created, revoked, last use, uses."""
    def work(store: Any, actor: str) -> int:
        rows = store.listing()
        for tok in rows:
            if args.json:
                print(json.dumps({"name": tok.name, "scopes": list(tok.scopes), "created_at": tok.created_at,
                                  "created_by": tok.created_by, "revoked_at": tok.revoked_at,
                                  "revoked_by": tok.revoked_by, "last_used_at": tok.last_used_at,
                                  "uses": tok.uses}))
            else:
                state = f"revoked {_when(tok.revoked_at)}" if tok.revoked_at else "live"
                print(f"{tok.name:<24} {' '.join(tok.scopes):<24} created {_when(tok.created_at)}  {state:<28} "
                      f"last used {_when(tok.last_used_at)}  uses {tok.uses}")
        if not rows and not args.json:
            print("no tokens; create one with `vipflow tokens create NAME --scope sessions`")
        return 0
    return _run(args, work)


def revoke_cmd(args: argparse.Namespace) -> int:
    """Revoke the token named; it is answered 401 from then on."""
    def work(store: Any, actor: str) -> int:
        store.revoke(args.name, actor)
        print(f"token {args.name!r} revoked")
        return 0
    return _run(args, work)
