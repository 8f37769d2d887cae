"""Logs mask patrons' IP addresses but not the operator's own infrastructure (loopback, configured hosts)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from worker import masking
from worker.config import Settings
from worker.logs import configure_logging
from worker.masking import keep_operator_hosts, mask_mapping, mask_text, operator_hosts

PATRON_V4, PATRON_V6 = "203.0.113.77", "2001:db8:85a3::8a2e:370:7334"
OWN_V4, OWN_V6 = "192.0.2.10", "2001:db8:ffff::10"  # what the configuration names (documentation ranges)


@pytest.fixture(autouse=True)
def _fresh_hosts() -> Iterator[None]:
    saved = masking._operator_ips
    masking._operator_ips = frozenset()
    yield
    masking._operator_ips = saved


def test_loopback_and_unspecified_addresses_stay_readable() -> None:
    """127.0.0.1, ::1, 0.0.0.0 and :: (the machine itself) are not masked in free text."""
    text = "listening on http://0.0.0.0:8080, Redis at 127.0.0.1:6379, VIP at [::1]:8090, also :: and 127.0.1.1"
    assert mask_text(text) == text


def test_patrons_addresses_are_masked_in_both_families() -> None:
    """A patron's IPv4 or IPv6 address in free text is masked, a private one included."""
    out = mask_text(f"from {PATRON_V4} and {PATRON_V6} and 10.20.30.40 and ::ffff:{PATRON_V4}")
    assert PATRON_V4 not in out and PATRON_V6 not in out and "10.20.30.40" not in out
    assert "8a2e" not in out


def test_configured_hosts_stay_readable_others_do_not() -> None:
    """The hosts the configuration names (Redis, ledger, VIP, wallet, ingest) are kept; a neighbour is not."""
    settings = Settings(redis={"url": f"redis://{OWN_V4}:6379/0"},
                        vip={"base_url": f"http://[{OWN_V6}]:8090"},
                        wallet={"url": "http://wallet.internal:8091"})
    keep_operator_hosts(operator_hosts(settings))
    out = mask_text(f"Redis {OWN_V4}:6379 refused; VIP [{OWN_V6}]:8090 timed out; 192.0.2.11 and {PATRON_V4}")
    assert f"{OWN_V4}:6379" in out and f"[{OWN_V6}]:8090" in out
    assert "192.0.2.11" not in out and PATRON_V4 not in out


def test_operator_hosts_lists_every_configured_host() -> None:
    """operator_hosts names the ingest and metrics hosts and the hosts of every configured URL."""
    settings = Settings(redis={"url": "redis://10.0.0.5:6379/0"}, ingest={"host": "10.0.0.6"},
                        database={"url": "postgresql+psycopg://vipflow@10.0.0.7:5432/vipflow"},
                        vip={"base_url": "https://api.vip.example"}, wallet={"url": "http://10.0.0.8:8091"},
                        worker={"metrics_host": "10.0.0.9"})
    assert {"10.0.0.5", "10.0.0.6", "10.0.0.7", "api.vip.example", "10.0.0.8", "10.0.0.9"} <= operator_hosts(settings)


def test_a_patrons_location_is_hidden_even_when_it_is_loopback() -> None:
    """A value under a personal-data key (location, ip) is hidden whatever it is: it is the patron's."""
    masked = mask_mapping({"location": "127.0.0.1", "Location": OWN_V4, "ip": "::1", "note": "via 127.0.0.1"})
    assert masked == {"location": "***", "Location": "***", "ip": "***", "note": "via 127.0.0.1"}


def test_times_and_ids_are_not_taken_for_addresses() -> None:
    """Clock times, ISO timestamps, MAC addresses and stream ids pass unchanged."""
    text = "at 12:30:45, 2026-11-30T02:46:47.815+00:00, aa:bb:cc:dd:ee:ff, entry 1796007265738-0"
    assert mask_text(text) == text


def test_log_lines_keep_the_operators_hosts_and_mask_the_patrons() -> None:
    """configure_logging(hosts=...) writes lines with the configured hosts in clear and patrons' masked."""
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("INFO", out, hosts=[OWN_V4, "redis.internal"])
        logging.getLogger("vipflow.test").warning("VIP at %s:8090 unreachable; patron at %s", OWN_V4, PATRON_V4,
                                                  extra={"location": PATRON_V4, "peer": "127.0.0.1:6379"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = json.loads(out.getvalue())
    assert line["msg"] == "VIP at 192.0.2.10:8090 unreachable; patron at *.*.*.*"
    assert (line["location"], line["peer"]) == ("***", "127.0.0.1:6379")
