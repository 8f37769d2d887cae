"""Build the configured wallet adapter."""

from __future__ import annotations

from worker.config import WalletSettings
from worker.wallet.protocol import Wallet


def make_wallet(settings: WalletSettings) -> Wallet:
    """The wallet ``wallet.adapter`` names: HTTP or the operator's Python class."""
    if settings.adapter == "python":
        from worker.wallet.python import load_python_wallet

        return load_python_wallet(settings)
    from worker.wallet.http import HttpWallet

    return HttpWallet(settings)
