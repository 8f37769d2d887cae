"""The start-up check names the one key that keeps a worker from working (worker.startup)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from worker.config import Settings
from worker.errors import ConfigError
from worker.startup import check_can_work

KEY = base64.b64encode(b"k" * 32).decode()


def _settings(**sections: dict[str, object]) -> Settings:
    vip = {"operator_id": "op-1", "secret_key1": KEY, **sections.pop("vip", {})}
    return Settings.model_validate({"vip": vip, **sections})


def test_shipped_rules_with_operator_and_key_can_work() -> None:
    """The shipped rules, an operator id and a secret key pass."""
    check_can_work(_settings())


@pytest.mark.parametrize(("sections", "key"), [
    ({"vip": {"operator_id": ""}}, "vip.operator_id"),
    ({"vip": {"operator_id": "   "}}, "vip.operator_id"),
    ({"vip": {"secret_key1": None}}, "vip.secret_key1"),
    ({"rules": {"path": "/nonexistent/vipflow-rules"}}, "rules.path"),
    ({"wallet": {"adapter": "python", "class": "no_such_module_here:Wallet"}}, "wallet.class"),
])
def test_each_missing_piece_is_named(sections: dict[str, dict[str, object]], key: str) -> None:
    """Each configuration that cannot work raises ConfigError naming its key."""
    with pytest.raises(ConfigError) as caught:
        check_can_work(_settings(**sections))
    assert caught.value.key == key
    assert str(caught.value).startswith(f"configuration: {key}: ")


def test_rules_that_do_not_load_are_named_by_rules_path(tmp_path: Path) -> None:
    """A rule file that does not load is refused as rules.path, with the loader's reason."""
    (tmp_path / "broken.yaml").write_text("ruleset: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        check_can_work(_settings(rules={"path": str(tmp_path)}))
    assert caught.value.key == "rules.path"
    assert "broken.yaml" in str(caught.value)
