"""The account-inquiry cache: VIP Connect's answer per card, kept for a short while.

Only found accounts are cached: a card VIP does not know yet may be enrolled a
minute later (the first notification after enrolment brings the new card), so
"not found" is asked again each time. The cached form carries no personal data
(``AccountInquiry`` drops it when parsing).
"""

from __future__ import annotations

import json
from typing import Any

from worker.vip.models import AccountInquiry
from worker.vip.protocol import VipApi
from worker.vip.retry import RetryPolicy, retried


class AccountCache:
    """Account inquiries cached in Redis for ``ttl_s`` seconds (0: no caching)."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int):
        self._redis = redis
        self.client = redis  # enrichment pipelines the cache read with the velocity script
        self._prefix = prefix
        self._ttl_s = ttl_s

    def _key(self, vip_card_number: str, product_type: str | None) -> str:
        return f"{self._prefix}:acct:{product_type or '-'}:{vip_card_number}"

    def inquire(self, api: VipApi, vip_card_number: str, product_type: str | None) -> AccountInquiry:
        """The cached inquiry, else ask VIP Connect (errors propagate) and cache a found account."""
        raw = self._redis.get(self._key(vip_card_number, product_type)) if self._ttl_s > 0 else None
        return self.resolve(raw, api, vip_card_number, product_type)

    def queue_get(self, pipe: Any, vip_card_number: str, product_type: str | None) -> bool:
        """Queue the cache read on pipeline ``pipe`` (False, nothing queued, when caching is off);
        pass its result to :meth:`resolve`."""
        if self._ttl_s <= 0:
            return False
        pipe.get(self._key(vip_card_number, product_type))
        return True

    def resolve(self, raw: bytes | None, api: VipApi, vip_card_number: str,
                product_type: str | None, retry: RetryPolicy | None = None) -> AccountInquiry:
        """The inquiry from the cache read ``raw``, else from VIP Connect (cached when found), asked again
        on 5xx, timeouts and resets as ``retry`` allows (asked once without it); VipApiError when it still fails."""
        key = self._key(vip_card_number, product_type)
        if raw is not None:
            try:
                return AccountInquiry.from_dict(json.loads(raw))
            except ValueError:
                self._redis.delete(key)  # an unreadable entry is asked again, not trusted
        def ask() -> AccountInquiry:
            return api.account_inquiry(vip_card_number, product_type)

        inquiry = ask() if retry is None else retried(retry, ask, "vip_account_inquiry")
        if inquiry.found and self._ttl_s > 0:
            self._redis.set(key, json.dumps(inquiry.to_dict()), ex=self._ttl_s)
        return inquiry

    def forget(self, vip_card_number: str, product_type: str | None) -> None:
        """Drop a cached inquiry (e.g. after VIP Connect refused an approval)."""
        self._redis.delete(self._key(vip_card_number, product_type))
