"""`vipflow tokens create|list|revoke` on an SQLite ledger: the token printed once, listed never."""

from __future__ import annotations

import json

import pytest

from producers.cli import main


@pytest.fixture(autouse=True)
def _ledger(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)


def test_create_prints_the_token_once_and_list_never_shows_it(capsys: pytest.CaptureFixture[str]) -> None:
    """create prints the token alone on stdout; list --json shows its name and scopes, not the token."""
    assert main(["tokens", "create", "site", "--scope", "sessions", "--scope", "status"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("vf_") and len(token) > 40
    assert main(["tokens", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert token not in out
    listed = json.loads(out)
    assert listed["name"] == "site" and listed["scopes"] == ["sessions", "status"] and listed["revoked_at"] is None


def test_revoke_and_the_mistakes_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """revoke marks the token revoked; a name in use or an unknown token exits 2 with one line."""
    assert main(["tokens", "create", "site", "--scope", "status"]) == 0
    assert main(["tokens", "create", "site", "--scope", "status"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["tokens", "revoke", "site"]) == 0
    assert main(["tokens", "revoke", "nobody"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no token named 'nobody'" in err
    assert main(["tokens", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["revoked_at"] is not None
