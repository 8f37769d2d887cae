"""The VIP Connect API: models, the protocol, the HTTP client, a fake, and safe approval."""

from worker.vip.approve import ApprovalOutcome, approve_with_reconciliation
from worker.vip.client import VipClient
from worker.vip.fake import FakeVip
from worker.vip.models import AccountInquiry, ApprovalResult, BankAccount, TransactionStatus
from worker.vip.protocol import ApprovalKind, VipApi

__all__ = [
    "AccountInquiry",
    "ApprovalKind",
    "ApprovalOutcome",
    "ApprovalResult",
    "BankAccount",
    "FakeVip",
    "TransactionStatus",
    "VipApi",
    "VipClient",
    "approve_with_reconciliation",
]
