"""``vipflow web``: serve the operator site's API (patron sessions, transaction status) and the review
workspace (the pages reviewers log in to)."""

from __future__ import annotations

import argparse
from typing import Any

from producers.commands.numbers import whole


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``web`` (with --host and --port overriding the configuration)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "web", help="the review workspace (pages) and the operator site's API (patron sessions, status)")
    parser.add_argument("--host", help="address to listen on (default: web.host)")
    parser.add_argument("--port", type=whole(0, 65535), help="port to listen on (default: web.port; 0: any free port)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the configuration, apply --host/--port, serve until interrupted; 0 on a clean stop."""
    from producers.web.server import serve
    from worker.config import load_settings

    settings = load_settings(getattr(args, "config", None))
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update={"web": settings.web.model_copy(update=overrides)})
    serve(settings)
    return 0
