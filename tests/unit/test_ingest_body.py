"""Bounded body reading: the ingestor stops at max_body_bytes, declared or streamed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from starlette.requests import Request

from producers.ingest.body import BodyTooLarge, read_limited

Receive = Callable[[], Awaitable[dict[str, object]]]


def request(chunks: list[bytes], content_length: int | None) -> tuple[Request, list[int]]:
    """A Request over ``chunks``; the returned list counts how many chunks were read."""
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    read = [0]

    async def receive() -> dict[str, object]:
        i = read[0]
        read[0] += 1
        return {"type": "http.request", "body": chunks[i], "more_body": i + 1 < len(chunks)}

    return Request(scope, receive), read


def test_declared_length_over_limit_is_refused_before_reading() -> None:
    """A Content-Length above the limit raises BodyTooLarge without reading a byte."""
    req, read = request([b"x" * 10], content_length=5000)
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_limited(req, 1024))
    assert read == [0]


def test_chunked_body_is_cut_off_once_past_the_limit() -> None:
    """A body without Content-Length stops being read as soon as it passes the limit."""
    req, read = request([b"x" * 600] * 10, content_length=None)
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_limited(req, 1024))
    assert read == [2]


def test_body_at_the_limit_is_read_whole() -> None:
    """A body of exactly the limit is returned whole."""
    req, _ = request([b"a" * 512, b"b" * 512], content_length=None)
    assert asyncio.run(read_limited(req, 1024)) == b"a" * 512 + b"b" * 512
