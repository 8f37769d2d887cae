"""Load the operator's own wallet class (``wallet.adapter: python``, ``wallet.class``)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, cast

from worker.config import WalletSettings
from worker.errors import ConfigError, reason
from worker.wallet.protocol import Wallet

_METHODS = ("balance", "patron_for_card", "hold", "release", "capture", "reverse")
_CREDIT = "credit"  # needed only with wallet.credit_deposits


def _split(path: str) -> tuple[str, str]:
    if ":" in path:
        module, _, name = path.partition(":")
    else:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise ConfigError(
            "wallet.class", f"'{path}' is not an import path like 'mypkg.wallet:Wallet'"
        )
    return module, name


def load_python_wallet(settings: WalletSettings) -> Wallet:
    """Import and instantiate ``wallet.class`` (with the settings if its constructor takes one)."""
    path = settings.class_ or ""
    module_name, name = _split(path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("wallet.class", f"cannot import module '{module_name}' ({exc})") from None
    cls: Any = getattr(module, name, None)
    if not callable(cls):
        raise ConfigError("wallet.class", f"module '{module_name}' has no class '{name}'")
    try:
        takes_arg = any(
            p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(cls).parameters.values()
        )
    except (TypeError, ValueError):
        takes_arg = False
    try:
        wallet = cls(settings) if takes_arg else cls()
    except Exception as exc:  # noqa: BLE001  (the operator's constructor may raise anything)
        raise ConfigError(
            "wallet.class", f"'{path}' failed to start ({reason(exc)})"
        ) from None
    needed = (*_METHODS, _CREDIT) if settings.credit_deposits else _METHODS
    missing = [m for m in needed if not callable(getattr(wallet, m, None))]
    if missing:
        raise ConfigError(
            "wallet.class", f"'{path}' lacks the wallet method(s) {', '.join(missing)}"
        )
    return cast(Wallet, wallet)
