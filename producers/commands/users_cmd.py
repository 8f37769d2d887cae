"""``vipflow users add|disable|enable|reset|list``: the review workspace's accounts.

A password is never an argument (a process list would show it): it is asked twice at a terminal, read
as one line from standard input otherwise, or made up with ``--generate`` and printed once. Every
change is recorded in the ledger's ``workspace_events`` with the command-line actor (``ledger.actor``,
else the operating-system user), and listed by the workspace's audit page.
Exit 2 on a bad name, role, limit or password, a name in use, or no such user; 1 when the ledger failed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
from datetime import UTC, datetime
from typing import Any

ROLES = ("viewer", "reviewer", "senior", "admin")  # worker.review_roles.Role, without importing it here
LIMIT_RANGE = "0.01 to 999999999.99 dollars"  # worker.review_roles.parse_limit's range, for the help


def add_parser(subparsers: Any) -> None:
    """Register ``users`` and its subcommands."""
    users = subparsers.add_parser("users", help="accounts of the review workspace (vipflow web)")
    sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="a new user with a role and a password")
    add.add_argument("username", help="2 to 64 lower-case letters, digits, . _ - (recorded as user:NAME)")
    add.add_argument("--role", required=True, choices=ROLES,
                     help="viewer (sees masked data), reviewer (decides up to a limit), senior (any amount, "
                          "second approvals), admin (users)")
    add.add_argument("--limit", metavar="DOLLARS", help=f"a reviewer's own limit, {LIMIT_RANGE} "
                                                        "(default: review.reviewer_limit); reviewers only")
    password = add.add_mutually_exclusive_group()
    password.add_argument("--generate", action="store_true", help="make up a password and print it once")
    password.add_argument("--no-password", action="store_true",
                          help="no local password: the user logs in through OpenID Connect only (web.oidc)")
    add.set_defaults(func=add_cmd)
    reset = sub.add_parser("reset", help="a new password (and role or limit); ends the user's sessions")
    reset.add_argument("username")
    reset.add_argument("--role", choices=ROLES, help="a new role")
    reset.add_argument("--limit", metavar="DOLLARS", help=f"a new limit, {LIMIT_RANGE}; reviewers only")
    reset.add_argument("--generate", action="store_true", help="make up a password and print it once")
    reset.set_defaults(func=reset_cmd)
    disable = sub.add_parser("disable", help="refuse the user's logins and end their sessions")
    disable.add_argument("username")
    disable.set_defaults(func=disable_cmd)
    enable = sub.add_parser("enable", help="let a disabled user log in again")
    enable.add_argument("username")
    enable.set_defaults(func=enable_cmd)
    ls = sub.add_parser("list", help="every user: role, limit, disabled or not")
    ls.add_argument("--json", action="store_true", help="JSON lines, one per user")
    ls.set_defaults(func=list_cmd)


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new password, and whether it was made up here (then printed once)."""
    from worker.ledger.users import UserRefused

    if args.generate:
        made = secrets.token_urlsafe(15)
        while made.startswith("-"):  # a leading dash reads as an option when pasted into a command
            made = secrets.token_urlsafe(15)
        return made, True
    if sys.stdin.isatty():
        first = getpass.getpass("password (12 characters or more): ")
        if getpass.getpass("the same again: ") != first:
            raise UserRefused("the two passwords differ; nothing was changed")
        return first, False
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UserRefused("no password on standard input (give one line, or use --generate)")
    return line, False


def _run(args: argparse.Namespace, work: Any, *, create: bool = False) -> int:
    from worker.config import load_settings
    from worker.ledger import Ledger
    from worker.ledger.actor import cli_actor
    from worker.ledger.users import UserStore

    settings = load_settings(getattr(args, "config", None))
    ledger = Ledger.open(settings.database.url, create=create)  # only `add` may start a new ledger
    try:
        return int(work(UserStore(ledger.engine), cli_actor(settings)))
    finally:
        ledger.close()


def _limit(text: str | None, role: Any) -> Any:
    """The --limit given (Decimal dollars) or None; InputError when out of range or the role has no limit.
    Checked before a password is asked for, so a refusal costs no typing."""
    from worker.review_roles import check_limit, parse_limit

    return None if text is None else check_limit(role, parse_limit(text, "--limit"), "--limit")


def add_cmd(args: argparse.Namespace) -> int:
    """Add the user; print the made-up password once with --generate."""
    from worker.review_roles import parse_role

    def work(store: Any, actor: str) -> int:
        limit = _limit(args.limit, parse_role(args.role))
        password, made = (None, False) if args.no_password else _password(args)
        user = store.add(args.username, parse_role(args.role), password, actor, limit=limit)
        print(f"user {user.username!r} added as {user.role.value}" + (f" (limit {limit:.2f})" if limit else ""))
        if made:
            print(f"password: {password}  (shown only now)")
        return 0
    return _run(args, work, create=True)


def reset_cmd(args: argparse.Namespace) -> int:
    """Set a new password (and role or limit); the user's open sessions end."""
    from worker.review_roles import parse_role

    def work(store: Any, actor: str) -> int:
        role = parse_role(args.role) if args.role else None
        current = store.existing(args.username)  # before the password prompt: an unknown name costs no typing
        limit = _limit(args.limit, role or current.role)
        password, made = _password(args)
        user = store.reset(args.username, password, actor, role=role, limit=limit)
        print(f"user {user.username!r} reset ({user.role.value}); their sessions have ended")
        if made:
            print(f"password: {password}  (shown only now)")
        return 0
    return _run(args, work)


def disable_cmd(args: argparse.Namespace) -> int:
    """Disable the user: logins refused, sessions ended."""
    def work(store: Any, actor: str) -> int:
        store.disable(args.username, actor)
        print(f"user {args.username!r} disabled; their sessions have ended")
        return 0
    return _run(args, work)


def enable_cmd(args: argparse.Namespace) -> int:
    """Enable a disabled user."""
    def work(store: Any, actor: str) -> int:
        store.enable(args.username, actor)
        print(f"user {args.username!r} enabled")
        return 0
    return _run(args, work)


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def list_cmd(args: argparse.Namespace) -> int:
    """One line per user: name, role, limit, created, disabled."""
    def work(store: Any, actor: str) -> int:
        users = store.listing()
        for u in users:
            limit = None if u.review_limit is None else f"{u.review_limit:.2f}"
            if args.json:
                print(json.dumps({"username": u.username, "role": u.role.value, "limit": limit,
                                  "created_at": u.created_at, "created_by": u.created_by,
                                  "disabled_at": u.disabled_at}))
            else:
                state = f"disabled {_when(u.disabled_at)}" if u.disabled_at else "active"
                shown = limit or ("default" if u.role.value == "reviewer" else "-")  # only reviewers have one
                print(f"{u.username:<24} {u.role.value:<9} limit {shown:<10} "
                      f"created {_when(u.created_at)} by {u.created_by:<20} {state}")
        if not users and not args.json:
            print("no users; add one with `vipflow users add NAME --role reviewer`")
        return 0
    return _run(args, work)
