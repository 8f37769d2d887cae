"""`vipflow tx show` masks VIP Connect's free-text error fields: the patron's names from the notification,
names a cue announces, e-mail addresses and phone numbers, while codes, stages and amounts stay readable."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_tx_show import PERSONAL, World, _approved_withdrawal, _show, world
from worker.pipeline import process

__all__ = ["world"]

ERROR = {"errorCode": 10, "transactionStage": "Approval",
         "operatorErrorMessage": "Invalid phone (404) 555-5555 on file for Jane Doe",
         "patronErrorMessage": "JANE, your transaction could not be completed.",
         "resolution": "Ask account holder: Mary Example to call +1 513 555 2222 or write to jane.doe@example.com"}
SECRETS = ("Jane", "JANE", "Doe", "Mary Example", "(404) 555-5555", "513 555 2222", "jane.doe@example.com")


def test_vips_error_text_is_masked_in_both_views(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """An error notification naming the patron shows, in text and JSON, no name, phone or e-mail."""
    _approved_withdrawal(world, "txfree0001")
    body = {"transactionId": "txfree0001", **ERROR}
    entry = world.deps.archive.append("error", json.dumps(body).encode(), status="valid",
                                      transaction_id="txfree0001", error=None, route="/vip/notify/error")
    process(entry, world.deps)
    for as_json in (False, True):
        code, out, _ = _show(capsys, "txfree0001", as_json=as_json)
        assert code == 0
        assert [s for s in (*SECRETS, *PERSONAL) if s in out] == []
        assert "Invalid phone *** on file for *** ***" in out
        assert "Ask account holder: *** to call *** or write to ***" in out
        assert "could not be completed" in out and "Approval" in out and "3000.00" in out
