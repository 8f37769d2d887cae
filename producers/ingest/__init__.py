"""The HTTP ingestor: VIP Connect's notification callbacks in, archive + queue out.

Public: ``create_app(settings, *, redis=None, publisher=None)`` (the ASGI app)
and ``serve(settings)`` (uvicorn). Both are loaded on first use so that
importing ``producers.ingest.command`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from producers.ingest.app import create_app

        return create_app
    if name == "serve":
        from producers.ingest.server import serve

        return serve
    raise AttributeError(f"module 'producers.ingest' has no attribute {name!r}")
