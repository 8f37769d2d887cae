"""`vipflow lists ...`, and `rules check|explain` reading the ledger's lists: messages, exit codes, masking."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from producers.cli import main
from worker.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
CARD = "7210695258"
LIST_RULES = """
  - id: blocked-card
    description: The VIP card is on the blocked list
    when: {vip_card_number: {in_list: blocked-cards}}
    outcome: reject

  - id: risky-network
    when: {location: {in_list: risky-nets}}
    outcome: review
"""


@pytest.fixture
def ledger_env(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.delenv("VIPFLOW_LEDGER__ACTOR", raising=False)
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    return sqlite_url


@pytest.fixture
def list_rules(tmp_path: Path) -> Path:
    """The shipped rules plus two rules naming lists (blocked-cards, risky-nets)."""
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "default", target)
    with (target / "withdraw.yaml").open("a", encoding="utf-8") as f:
        f.write(LIST_RULES)
    return target


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _line_of(path: Path, text: str) -> int:
    return next(n for n, row in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in row)


def test_a_list_is_changed_and_shown_without_echoing_its_entries(ledger_env: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """create, add, remove each say the version and counts; show lists versions with the actor; entries masked."""
    assert _run(capsys, "lists", "create", "blocked-cards", "--kind", "card")[0] == 0
    code, out, _ = _run(capsys, "lists", "add", "blocked-cards", CARD, "1234567", "--reason", "chargebacks")
    assert (code, out.strip()) == (0, "list blocked-cards v2: 2 added, 0 removed (2 entries)")
    code, out, _ = _run(capsys, "lists", "add", "blocked-cards", CARD)
    assert out.strip() == "list blocked-cards: nothing changed, still v2 (2 entries); 1 already on it"
    assert CARD not in out
    code, out, _ = _run(capsys, "lists", "show", "blocked-cards", "--entries")
    assert code == 0
    assert "v2" in out and "chargebacks" in out and "os:" in out
    assert "******5258" in out and CARD not in out
    code, out, _ = _run(capsys, "lists", "show", "blocked-cards", "--has", CARD, "--json")
    assert json.loads(out) == {"list": "blocked-cards", "version": 2, "on_list": True, "added_version": 2,
                               "entry": "******5258"}


def test_has_on_a_cidr_list_matches_by_range_as_the_rules_do(ledger_env: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--has on a cidr list: an address inside a range is on it, naming the narrowest range that holds it and
    its version; narrow ranges masked as --entries masks them; a bad value names --has, not the value."""
    _run(capsys, "lists", "create", "risky-nets", "--kind", "cidr")
    _run(capsys, "lists", "add", "risky-nets", "10.0.0.0/8", "2001:db8::/32")
    _run(capsys, "lists", "add", "risky-nets", "10.9.0.0/16", "198.51.100.7")
    code, out, _ = _run(capsys, "lists", "show", "risky-nets", "--has", "10.9.9.9")
    assert (code, out.strip()) == (0, "on list risky-nets: inside its range 10.9.0.0/16, there since v3 (now v3)")
    code, out, _ = _run(capsys, "lists", "show", "risky-nets", "--has", "10.1.2.3", "--json")
    assert json.loads(out) == {"list": "risky-nets", "version": 3, "on_list": True, "added_version": 2,
                               "entry": "10.0.0.0/8"}
    code, out, _ = _run(capsys, "lists", "show", "risky-nets", "--has", "::ffff:10.1.2.3")
    assert "inside its range 10.0.0.0/8" in out
    code, out, _ = _run(capsys, "lists", "show", "risky-nets", "--has", "2001:db8:1::5")
    assert "inside its range 2001:db8::/32, there since v2" in out
    code, out, _ = _run(capsys, "lists", "show", "risky-nets", "--has", "10.200.0.0/16")
    assert "inside its range 10.0.0.0/8" in out
    code, out, _ = _run(capsys, "lists", "show", "risky-nets", "--has", "198.51.100.7")
    assert "inside its range ***/32, there since v3" in out and "198.51.100.7" not in out
    code, out, _ = _run(capsys, "lists", "show", "risky-nets", "--has", "11.0.0.1")
    assert (code, out.strip()) == (0, "not on list risky-nets (v3)")
    code, _, err = _run(capsys, "lists", "show", "risky-nets", "--has", "10.9.9.999")
    assert (code, err.strip()) == (2, "vipflow: --has: an IP range is an address or address/prefix, e.g. "
                                      "203.0.113.0/24")


def test_a_bad_entry_or_an_unknown_list_is_exit_2_naming_the_place(ledger_env: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A bad value is exit 2 naming its place (not the value); an unknown list exit 2 saying how to make one."""
    _run(capsys, "lists", "create", "routes", "--kind", "routing")
    code, _, err = _run(capsys, "lists", "add", "routes", "021000021", "0210-00021")
    assert (code, err.strip()) == (2, "vipflow: entry 2: a bank routing number is 8 or 9 digits")
    code, _, err = _run(capsys, "lists", "remove", "nope", "021000021")
    assert code == 2 and "no list named 'nope'" in err and "vipflow lists create" in err


def test_a_csv_import_is_one_version_or_nothing(ledger_env: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """import adds a file in one version; a bad row is exit 2 naming FILE:LINE and nothing is imported."""
    _run(capsys, "lists", "create", "nets", "--kind", "cidr")
    good = tmp_path / "nets.csv"
    good.write_text("cidr\n10.0.0.0/8\n203.0.113.7\n", encoding="utf-8")
    code, out, _ = _run(capsys, "lists", "import", "nets", str(good))
    assert (code, out.strip()) == (0, "2 rows read (2 distinct); list nets v2: 2 added, 0 removed (2 entries)")
    bad = tmp_path / "bad.csv"
    bad.write_text("192.0.2.0/24\n192.0.2.1/24\n", encoding="utf-8")
    code, _, err = _run(capsys, "lists", "import", "nets", str(bad), "--replace")
    assert code == 2
    assert err.strip() == (f"vipflow: {bad}:2: an IP range has no host bits set past its prefix (did you mean "
                           "192.0.2.0/24?); nothing was imported")
    assert json.loads(_run(capsys, "lists", "show", "--json")[1])["version"] == 2


def test_one_entry_and_one_row_are_counted_in_the_singular(ledger_env: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """"1 entries" and "1 rows read" were printed: a count of one takes the singular noun in every message."""
    _run(capsys, "lists", "create", "nets", "--kind", "cidr")
    one = tmp_path / "one.csv"
    one.write_text("10.0.0.0/8\n", encoding="utf-8")
    code, out, _ = _run(capsys, "lists", "import", "nets", str(one))
    assert (code, out.strip()) == (0, "1 row read (1 distinct); list nets v2: 1 added, 0 removed (1 entry)")
    assert _run(capsys, "lists", "add", "nets", "10.0.0.0/8")[1].strip() == (
        "list nets: nothing changed, still v2 (1 entry); 1 already on it")
    assert "v2, 1 entry" in _run(capsys, "lists", "show", "nets")[1]
    assert re.search(r"^nets\s+cidr\s+v2\s+1 entry\s+changed ", _run(capsys, "lists", "show")[1], re.M)


def test_reading_commands_create_no_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """lists show/add on a missing SQLite file create nothing and exit 2 naming it."""
    missing = tmp_path / "none.db"
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", f"sqlite:///{missing}")
    code, _, err = _run(capsys, "lists", "show")
    assert code == 2 and f"no ledger at {missing}" in err
    assert not missing.exists()


def test_rules_check_refuses_an_unknown_list_with_file_and_line(ledger_env: str, list_rules: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`rules check` names each unknown list at file:line with its rule; once created, the rules pass."""
    Ledger.open(ledger_env).close()
    _run(capsys, "lists", "create", "blocked-cards", "--kind", "card")
    withdraw = list_rules / "withdraw.yaml"
    code, out, _ = _run(capsys, "rules", "check", str(list_rules))
    line = _line_of(withdraw, "in_list: risky-nets")
    assert code == 1
    assert out.strip() == (f"{withdraw}:{line}: rule 'risky-network': unknown list 'risky-nets' (vipflow lists "
                           "show names them all; vipflow lists create makes one)")
    _run(capsys, "lists", "create", "risky-nets", "--kind", "cidr")
    assert _run(capsys, "rules", "check", str(list_rules))[0] == 0


def test_rules_check_reports_an_unknown_list_with_the_files_other_problems(ledger_env: str, list_rules: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A file with another error still has the lists of its rules that loaded checked, in the same pass: an
    unknown list, a list of the wrong kind and the bad rule, each at its line, in line order; another file's
    lists too."""
    Ledger.open(ledger_env).close()
    _run(capsys, "lists", "create", "blocked-cards", "--kind", "cidr")  # the wrong kind for vip_card_number
    withdraw = list_rules / "withdraw.yaml"
    with withdraw.open("a", encoding="utf-8") as f:
        f.write("\n  - id: broken\n    when: {amount: {gte: 10}}\n    outcome: approve-ish\n")
    deposit = list_rules / "deposit.yaml"
    with deposit.open("a", encoding="utf-8") as f:
        f.write("\n  - id: bad-patron\n    when: {patron_id: {in_list: bad-patrons}}\n    outcome: reject\n")
    code, out, _ = _run(capsys, "rules", "check", str(list_rules))
    assert code == 1
    lines = out.strip().splitlines()
    cards, nets = _line_of(withdraw, "in_list: blocked-cards"), _line_of(withdraw, "in_list: risky-nets")
    broken = _line_of(withdraw, "outcome: approve-ish")
    patrons = _line_of(deposit, "in_list: bad-patrons")
    ours = [line for line in lines if line.startswith(str(withdraw))]
    assert [line.split(": ", 1)[0] for line in ours] == [f"{withdraw}:{n}" for n in (cards, nets, broken)]
    assert "rule 'blocked-card': list 'blocked-cards' holds IP ranges (CIDR)" in ours[0]
    assert "rule 'risky-network': unknown list 'risky-nets'" in ours[1]
    assert "rule 'broken': outcome: 'approve-ish' is not an outcome" in ours[2]
    assert f"{deposit}:{patrons}: rule 'bad-patron': unknown list 'bad-patrons'" in out


def test_rules_check_without_a_ledger_checks_the_rest_and_says_lists_were_not(
        tmp_path: Path, list_rules: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No ledger (a CI machine) or --no-ledger: the files are checked, the lists are not, and stderr says so."""
    missing = tmp_path / "none.db"
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", f"sqlite:///{missing}")
    code, out, err = _run(capsys, "rules", "check", str(list_rules))
    assert code == 0 and "ruleset withdraw" in out
    assert err.strip() == (f"vipflow: lists not checked, no ledger at {missing} (database.url): blocked-cards, "
                           "risky-nets; workers refuse rules naming a list their ledger lacks")
    assert not missing.exists()
    code, _, err = _run(capsys, "rules", "check", str(list_rules), "--no-ledger")
    assert code == 0 and "lists not checked, --no-ledger" in err


def test_rules_explain_decides_with_the_ledgers_lists(ledger_env: str, list_rules: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """explain reads the lists as the ledger holds them now and prints their versions."""
    Ledger.open(ledger_env).close()
    _run(capsys, "lists", "create", "blocked-cards", "--kind", "card")
    _run(capsys, "lists", "create", "risky-nets", "--kind", "cidr")
    _run(capsys, "lists", "add", "blocked-cards", CARD)
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"vip_card_number": CARD, "amount": 50, "location": "10.1.1.1"}), encoding="utf-8")
    code, out, _ = _run(capsys, "rules", "explain", "withdraw", str(facts), "--rules", str(list_rules))
    assert code == 0
    assert "  MATCH blocked-card -> reject" in out
    assert "location in_list risky-nets; location = '10.1.1.1', which is not on list risky-nets v1" in out
    assert out.rstrip().endswith("lists: blocked-cards v2, risky-nets v1")


def test_a_worker_refuses_to_start_on_rules_naming_a_list_the_ledger_lacks(
        ledger_env: str, list_rules: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """check_can_work (both ways of starting a worker) refuses rules.path naming a missing list, at file:line."""
    import base64
    import os

    from worker.config import load_settings
    from worker.errors import ConfigError
    from worker.startup import check_can_work

    monkeypatch.setenv("VIPFLOW_VIP__SECRET_KEY1", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("VIPFLOW_VIP__OPERATOR_ID", "op-test")
    monkeypatch.setenv("VIPFLOW_RULES__PATH", str(list_rules))
    settings = load_settings()
    _run(capsys, "lists", "create", "blocked-cards", "--kind", "card")
    with pytest.raises(ConfigError) as info:
        check_can_work(settings)
    line = _line_of(list_rules / "withdraw.yaml", "in_list: risky-nets")
    assert str(info.value).startswith(f"configuration: rules.path: {list_rules / 'withdraw.yaml'}:{line}: rule "
                                      "'risky-network': unknown list 'risky-nets'")
    _run(capsys, "lists", "create", "risky-nets", "--kind", "cidr")
    check_can_work(settings)


def test_a_reason_is_kept_and_shown_masked_like_any_free_text(ledger_env: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The reason given is kept with the version; `show` masks personal data in it as in every view."""
    _run(capsys, "lists", "create", "blocked-cards", "--kind", "card")
    _run(capsys, "lists", "add", "blocked-cards", CARD, "--reason", f"called Mr Smith about card {CARD}")
    code, out, _ = _run(capsys, "lists", "show", "blocked-cards")
    assert code == 0 and "(called Mr *** about card ******5258)" in out
    assert "Smith" not in out and CARD not in out
