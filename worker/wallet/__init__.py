"""The operator's wallet: the protocol, the HTTP and Python adapters, an in-memory fake."""

from worker.wallet.factory import make_wallet
from worker.wallet.fake import InMemoryWallet
from worker.wallet.http import HttpWallet
from worker.wallet.protocol import Hold, Wallet
from worker.wallet.python import load_python_wallet

__all__ = ["Hold", "HttpWallet", "InMemoryWallet", "Wallet", "load_python_wallet", "make_wallet"]
