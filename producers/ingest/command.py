"""``vipflow ingest``: run the HTTP ingestor."""

from __future__ import annotations

import argparse
from typing import Any

from producers.commands.numbers import whole


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``ingest`` (with --host and --port overriding the configuration)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ingest", help="receive VIP Connect notifications over HTTP and queue them"
    )
    parser.add_argument("--host", help="address to listen on (default: ingest.host)")
    parser.add_argument("--port", type=whole(1, 65535), help="port to listen on (default: ingest.port)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the configuration, apply --host/--port, serve until interrupted; 0 on a clean stop."""
    from producers.ingest.server import serve
    from worker.config import load_settings

    settings = load_settings(getattr(args, "config", None))
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        ingest = settings.ingest.model_copy(update=overrides)
        settings = settings.model_copy(update={"ingest": ingest})
    serve(settings)
    return 0
