"""Counts, limits, rates and ports below their minimum, and blank transaction ids, are refused by the parser
(exit 2, naming the option);
`sim --send` that got no answer says why in one line; `rules check` on a path that is not there says so."""

from __future__ import annotations

import base64
import json
import os
import socket
from pathlib import Path

import pytest

from producers.cli import main


@pytest.mark.parametrize(("argv", "option"), [
    (["review", "list", "--limit", "-1"], "--limit"),
    (["review", "list", "--limit", "0"], "--limit"),
    (["review", "list", "--limit", "ten"], "--limit"),
    (["replay", "--dry-run", "--max-rows", "-1"], "--max-rows"),
    (["sim", "--send", "-3"], "--send"),
    (["sim", "--send", "0"], "--send"),
    (["sim", "--send", "2", "--rate", "-1"], "--rate"),
    (["sim", "--send", "2", "--rate", "0"], "--rate"),
    (["sim", "--send", "2", "--rate", "nan"], "--rate"),
    (["sim", "--error-rate", "1.5"], "--error-rate"),
    (["sim", "--latency-ms", "-5"], "--latency-ms"),
    (["sim", "--timeout-ms", "-1"], "--timeout-ms"),
    (["sim", "--vip-port", "-1"], "--vip-port"),
    (["sim", "--wallet-port", "70000"], "--wallet-port"),
    (["ingest", "--port", "0"], "--port"),
    (["worker", "--concurrency", "0"], "--concurrency"),
    (["run", "--count", "-5"], "--count"),
    (["run", "--rate", "0"], "--rate"),
    (["run", "--exit-after", "-1"], "--exit-after"),
    (["web", "--port", "70000"], "--port"),
])
def test_a_number_below_its_minimum_is_refused_naming_the_option(
        argv: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`review list --limit -1` no longer drops rows, `sim --send -3` no longer exits 0: exit 2, the option
    and the range said."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and ("out of range" in err or "not a" in err)


@pytest.mark.parametrize(("argv", "said"), [
    (["tx", "show", ""], "the transaction id is empty"),
    (["review", "show", "   "], "the transaction id is empty"),
    (["review", "approve", "", "--reason", "x"], "the transaction id is empty"),
    (["labels", "show", "x" * 65], "at most 64 characters; this one has 65"),
])
def test_a_blank_or_overlong_transaction_id_is_refused_by_the_parser(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty id was looked up as it is and reported unknown, with a blank where the id goes: now exit 2
    naming the argument, before any store is opened."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "argument" in err and said in err


@pytest.mark.parametrize("argv", [["review", "list", "--limit", "1"], ["replay", "--dry-run", "--max-rows", "0"],
                                  ["sim", "--send", "1", "--rate", "0.5"], ["sim", "--vip-port", "0"]])
def test_the_minimum_itself_is_accepted(argv: list[str]) -> None:
    """The bounds are inclusive where the value makes sense (a port 0 is any free port)."""
    from producers.cli import build_parser

    build_parser().parse_args(argv)


@pytest.fixture
def signing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    monkeypatch.setenv("VIPFLOW_VIP__SECRET_KEY1", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("VIPFLOW_VIP__OPERATOR_ID", "op-test")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_send_to_a_port_with_nothing_listening_says_so(signing: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON report stays on stdout; one line on stderr names the target and that nothing answered."""
    target = f"http://127.0.0.1:{_closed_port()}"
    assert main(["sim", "--send", "2", "--target", target]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["statuses"] == {"0": 2}
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vipflow: nothing answered at {target} (")
    assert "vipflow ingest" in lines[0]


def test_send_to_a_target_that_is_no_url_says_so(signing: None, capsys: pytest.CaptureFixture[str]) -> None:
    """`--target notaurl`: one line saying the target is not an http(s) URL, exit 1, the report on stdout."""
    assert main(["sim", "--send", "2", "--target", "notaurl"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["statuses"] == {"0": 2}
    assert err.strip().splitlines() == [
        "vipflow: --target notaurl is not an http:// or https:// URL (e.g. http://127.0.0.1:8080); 2 of 2 not sent"]


@pytest.mark.parametrize("command", ["check", "test"])
def test_rules_on_a_path_that_does_not_exist_says_so(command: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`rules check /nonexistent`: "does not exist" (not "holds no rule files"), exit 2."""
    missing = tmp_path / "nonexistent"
    assert main(["rules", command, str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vipflow: {missing} does not exist; give rule files or a directory of them "
        "(vipflow rules check with no path checks rules.path)")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["rules", "check", str(empty)]) == 1  # there but empty: still said as such
    assert "holds no rule files" in capsys.readouterr().out
