"""Reading a request body without ever holding more than the configured maximum."""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body is larger than ``ingest.max_body_bytes``."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body; BodyTooLarge once Content-Length or the bytes read pass ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    # Chunked bodies declare no length: count while streaming and stop early.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
