"""Free text is masked like the rest: names, e-mail addresses and phone numbers written with separators,
while ordinary words, transaction ids, amounts, dates and the operator's own URLs stay readable."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.logs import JsonFormatter
from worker.masking import mask_mapping, mask_text
from worker.masking_people import names_in


@pytest.mark.parametrize(("text", "shown"), [
    ("Please call (513) 555-2222", "Please call ***"),
    ("Please call 513-555-2222.", "Please call ***."),
    ("Please call +1 513 555 2222 today", "Please call *** today"),
    ("Please call 1-513-555-2222 or 513.555.2222", "Please call *** or ***"),
    ("Please call +44 20 7946 0958", "Please call ***"),
    ("write to jane.doe+vip@example.com or 8ZN2EMYP@5JP6OEAZ.COM", "write to *** or ***"),
])
def test_phone_numbers_with_separators_and_email_addresses_are_masked(text: str, shown: str) -> None:
    """Phones in the ways people write them and e-mail addresses are hidden whole."""
    assert mask_text(text) == shown


@pytest.mark.parametrize(("text", "shown"), [
    ("Patron John Smith exceeded the daily limit", "Patron *** exceeded the daily limit"),
    ("Dear Mrs. O'Brien, your withdrawal was declined", "Dear Mrs. ***, your withdrawal was declined"),
    ("Please contact Dr. Jane Roe", "Please contact Dr. ***"),
    ("account holder: MARY ANN LEE; card closed", "account holder: ***; card closed"),
    ("firstName=Jane lastName=Doe", "firstName=*** lastName=***"),
    ("Patron name: JANE DOE", "Patron name: ***"),
    ("customer Ann Example called", "customer *** called"),
])
def test_names_a_title_or_cue_announces_are_masked(text: str, shown: str) -> None:
    """A capitalised name after a title (Mr, Mrs, Dr ...) or a cue (patron, account holder, name:) is hidden."""
    assert mask_text(text) == shown


@pytest.mark.parametrize("text", [
    "Contact VIP Preferred customer service.",
    "Customer Service: Transaction Failed At Bank XYZ",
    "Patron Account Locked; Invalid phone number; FCRA Decline",
    "errorCode 13, transactionStage Approval, Closed Account",
    "transaction T5DB2C8A91E4F7A0B3C6D9E2 amount 89.76 (1,234.56 daily) on 2024-01-15T10:00:00+00:00",
    "2022-10-03T14:23:09.2188558+00:00 entry 1700000000000-0, 12:30:45, version 3.12.1",
    "ledger postgresql+psycopg://postgres@db.example.com:5432/vipflow, Redis redis://:pw@127.0.0.1:6379/12",
    "Your transaction could not be completed. Contact VIP Preferred customer service.",
])
def test_ordinary_words_ids_amounts_and_dates_stay_readable(text: str) -> None:
    """Nothing in text without a person's data is changed (the redis password is the URL masking's own job)."""
    assert mask_text(text) == text


def test_the_notifications_names_are_masked_wherever_they_appear() -> None:
    """The patron's first and last names from the notification are hidden in any casing, without a cue."""
    names = names_in({"FirstName": "Jane", "LastName": "Doe", "nested": {"firstName": "Mary Ann"}})
    assert names == {"Jane", "Doe", "Mary", "Ann"}
    text = "DOE, JANE: account 9f80db7112 of jane's bank is closed; Doe-Smith and Janet untouched"
    assert mask_text(text, names) == ("***, ***: account 9f80db7112 of ***'s bank is closed; "
                                      "***-Smith and Janet untouched")


def test_vips_error_fields_are_masked_in_a_mapping() -> None:
    """VIP Connect's free-text error fields are masked as text, codes and stages left as they are."""
    error = {"errorCode": 10, "transactionStage": "Approval",
             "operatorErrorMessage": "Invalid phone (513) 555-2222 for patron Jane Doe",
             "patronErrorMessage": "Jane, your transaction could not be completed.",
             "resolution": "Contact VIP Preferred customer service at help@vip.example.com",
             "errorMessage": "Patron Jane Doe: FAILED"}
    shown = mask_mapping({"vip_error": error}, names=("Jane", "Doe"))["vip_error"]
    assert shown == {"errorCode": 10, "transactionStage": "Approval",
                     "operatorErrorMessage": "Invalid phone *** for patron *** ***",
                     "patronErrorMessage": "***, your transaction could not be completed.",
                     "resolution": "Contact VIP Preferred customer service at ***",
                     "errorMessage": "Patron *** ***: FAILED"}


def test_log_lines_mask_free_text_in_the_message_and_the_fields() -> None:
    """A log line's message and extra fields carrying VIP's words show no name, e-mail or phone."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.masking.people")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("VIP said: Patron John Smith, call 513-555-2222",
                    extra={"detail": "Dear Mr. Smith, write to john@smith.example"})
    finally:
        log.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["msg"] == "VIP said: Patron ***, call ***"
    assert line["detail"] == "Dear Mr. ***, write to ***"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzAEJM_-.:@+ 0123456789"), max_size=40))
def test_the_fast_path_for_plain_words_masks_exactly_what_the_full_rules_do(text: str) -> None:
    """mask_text's shortcut for lower-case words gives the same text as running every rule."""
    from worker.masking import _mask_text

    assert mask_text(text) == _mask_text(text, ())
