"""JSON log lines (worker.logs) as the ingestor writes them: one object a line, masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from worker.logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO", out)
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_a_record_is_one_json_line_with_its_extra_fields(stream: io.StringIO) -> None:
    """A log call becomes one JSON object holding level, logger, message and extra fields."""
    logging.getLogger("vipflow.ingest").warning("refused %s", "deposit", extra={"route": "deposit"})
    line = json.loads(stream.getvalue())
    assert (line["level"], line["logger"], line["msg"], line["route"]) == (
        "WARNING", "vipflow.ingest", "refused deposit", "deposit")


def test_tokens_ips_and_card_numbers_are_masked(stream: io.StringIO) -> None:
    """A bearer token, an IP address and a card number never reach the line in clear."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiIifQ.c2lnbmF0dXJl"
    logging.getLogger("x").error("Bearer %s from 192.168.1.1", token,
                                 extra={"vip_card_number": "7210642759"})
    text = stream.getvalue()
    assert token not in text and "192.168.1.1" not in text and "7210642759" not in text
    assert json.loads(text)["vip_card_number"].endswith("2759")
