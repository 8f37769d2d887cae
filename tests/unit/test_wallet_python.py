"""Loading the operator's Python wallet class, and the adapter factory."""

from __future__ import annotations

from decimal import Decimal

import pytest

from worker.config import WalletSettings
from worker.errors import ConfigError
from worker.wallet import HttpWallet, InMemoryWallet, load_python_wallet, make_wallet


class NeedsSettings:
    """A wallet whose constructor takes the settings (the loader must pass them)."""

    def __init__(self, settings: WalletSettings):
        self.settings = settings

    def balance(self, patron_id: str) -> Decimal | None:
        return Decimal("1")

    def patron_for_card(self, vip_card_number: str) -> str | None:
        return None

    def hold(self, key: str, patron_id: str, amount: Decimal) -> None:
        return None

    def release(self, key: str) -> bool:
        return True

    def capture(self, key: str) -> None:
        return None

    def reverse(self, key: str) -> None:
        return None


class NotAWallet:
    """Lacks the wallet methods."""


class NoCardLookup(NeedsSettings):
    """A wallet written before the card lookup: every method but patron_for_card."""

    patron_for_card = None  # type: ignore[assignment]


def _python(path: str) -> WalletSettings:
    return WalletSettings(adapter="python", **{"class": path})


@pytest.mark.parametrize("path", ["worker.wallet.fake:InMemoryWallet", "worker.wallet.fake.InMemoryWallet"])
def test_loads_class_by_colon_or_dot_path(path: str) -> None:
    """Both 'pkg.mod:Class' and 'pkg.mod.Class' load the class and instantiate it."""
    assert isinstance(load_python_wallet(_python(path)), InMemoryWallet)


def test_passes_settings_when_constructor_takes_them() -> None:
    """A class whose constructor takes one argument receives the wallet settings."""
    settings = _python(f"{__name__}:NeedsSettings")
    wallet = load_python_wallet(settings)
    assert isinstance(wallet, NeedsSettings) and wallet.settings is settings


@pytest.mark.parametrize(
    "path", ["no_such_module_xyz:Wallet", "worker.wallet.fake:Missing", f"{__name__}:NotAWallet", "nodots"]
)
def test_bad_class_is_config_error_naming_the_key(path: str) -> None:
    """An unimportable, missing or incomplete class is a ConfigError naming wallet.class."""
    with pytest.raises(ConfigError) as info:
        load_python_wallet(_python(path))
    assert info.value.key == "wallet.class"


def test_factory_builds_http_by_default() -> None:
    """make_wallet gives the HTTP adapter for adapter 'http'."""
    assert isinstance(make_wallet(WalletSettings()), HttpWallet)


def test_factory_builds_python_class() -> None:
    """make_wallet loads the class for adapter 'python'."""
    assert isinstance(make_wallet(_python("worker.wallet.fake:InMemoryWallet")), InMemoryWallet)


def test_a_class_without_the_card_lookup_is_refused_naming_it() -> None:
    """A wallet class lacking patron_for_card is a ConfigError naming the method, not a failure later."""
    with pytest.raises(ConfigError, match="patron_for_card") as info:
        load_python_wallet(_python(f"{__name__}:NoCardLookup"))
    assert info.value.key == "wallet.class"
