"""The pieces of ``vipflow run``: its port checks, its clean start, var/demo.env and the closing summary."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.commands.live_table import row_of, summary_lines
from producers.commands.run_ports import Need, PortTaken, check, check_redis_port, is_free
from producers.commands.run_state import clean_files, env_values, write_env_file
from worker.config import Settings
from worker.ledger import TransactionRecord
from worker.ledger.states import State


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a test socket listens on (someone else's program)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_a_taken_port_names_itself_and_its_flag(held_port: int) -> None:
    """A port held by another program stops the check with the port, what needs it and the flag to move it."""
    assert not is_free("127.0.0.1", held_port)
    with pytest.raises(PortTaken) as err:
        check([Need("the ingestor", "127.0.0.1", held_port, "--ingest-port")])
    assert str(err.value) == (f"port {held_port} (the ingestor, 127.0.0.1) is taken by another program: "
                              "stop it, or choose another port with --ingest-port PORT")


def test_a_port_given_twice_is_refused() -> None:
    """Two parts of the demo on one port are refused before either starts, naming both."""
    with pytest.raises(PortTaken, match="port 18080 is given to both the ingestor and the VIP Connect simulator"):
        check([Need("the ingestor", "127.0.0.1", 18080, "--ingest-port"),
               Need("the VIP Connect simulator", "127.0.0.1", 18080, "--vip-port")])


def test_a_redis_port_taken_by_something_else_names_redis_url(held_port: int) -> None:
    """When no Redis answers but the port is taken, the message names it and --redis-url."""
    with pytest.raises(PortTaken, match=f"port {held_port} \\(Redis, .*--redis-url"):
        check_redis_port(f"redis://127.0.0.1:{held_port}/0")


def test_clean_start_removes_the_demos_files_only(tmp_path: Path) -> None:
    """The clean start removes var/'s Redis data, logs, env file and its own ledger; nothing else."""
    for name in ("redis/appendonly.aof", "logs/worker.log", "demo.env", "vipflow.db", "vipflow.db-wal", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert clean_files(tmp_path, own_ledger=False) == ["redis/", "logs/", "demo.env"]
    assert (tmp_path / "vipflow.db").exists()
    assert clean_files(tmp_path, own_ledger=True) == ["vipflow.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_the_env_file_is_private_and_sourceable(tmp_path: Path) -> None:
    """var/demo.env is mode 0600 and a shell that sources it (set -a) exports every value exactly."""
    settings = Settings(database={"url": f"sqlite:///{tmp_path}/it's here.db"})
    values = env_values(settings, {"VIPFLOW_VIP__SECRET_KEY1": "a2V5 $(not run)"}, None)
    path = tmp_path / "demo.env"
    write_env_file(path, values, own_key=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = subprocess.run(["bash", "-c", f"set -a; . '{path}'; set +a; env"], env={"PATH": os.environ["PATH"]},
                         capture_output=True, text=True, check=True).stdout
    exported = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("VIPFLOW_"))
    assert {k: exported[k] for k in values} == values
    assert exported["VIPFLOW_DATABASE__URL"].endswith("it's here.db")


def test_a_key_that_is_not_the_demos_is_not_written(tmp_path: Path) -> None:
    """When the secret key is the user's own, the file says to set it and does not copy it."""
    path = tmp_path / "demo.env"
    write_env_file(path, env_values(Settings(), {}, None), own_key=False)
    text = path.read_text()
    assert "SECRET_KEY" not in text.replace("The secret key", "") and "is not copied here" in text


def _record(txid: str, outcome: str, state: State, matched: list[tuple[str, str]], **kw: object) -> TransactionRecord:
    decision = {"outcome": outcome, "matched": [{"id": i, "description": "", "outcome": o} for i, o in matched]}
    return TransactionRecord(transaction_id=txid, transaction_type="withdraw", amount="61.9", state=state,
                             decision=decision, **kw)  # type: ignore[arg-type]


def test_summary_counts_each_state_with_its_reasons() -> None:
    """The summary gives counts and shares per final state, and the rules of the decided outcome as reasons."""
    rows = [row_of(_record("t1", "approve", State.APPROVED, [("standard-withdrawal", "approve")])),
            row_of(_record("t2", "approve", State.APPROVED, [("standard-withdrawal", "approve")])),
            row_of(_record("t3", "review", State.REVIEW, [("large-withdrawal", "review"),
                                                          ("standard-withdrawal", "approve")])),
            row_of(_record("t4", "reject", State.REJECTED, [("exceeds-wallet-balance", "reject"),
                                                            ("large-withdrawal", "review")])),
            row_of(_record("t5", "review", State.APPROVED, [("large-withdrawal", "review")])),
            row_of(_record("t6", "approve", State.REVIEW, [("standard-withdrawal", "approve")],
                           review_reason="VIP refused the approval (400)"))]
    assert rows[0].amount == "61.90"
    assert summary_lines(rows) == [
        "6 decided: 3 approved (50%), 2 review (33%), 1 rejected (17%)",
        "  approved     3  standard-withdrawal 2, approved in review 1",
        "  review       2  large-withdrawal 1, VIP refused the approval (400) 1",
        "  rejected     1  exceeds-wallet-balance 1",
    ]


def test_a_second_demo_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    """Two `vipflow run` in one --var folder would clean each other's state: the second is refused in one
    line naming the folder and --var; once the first ends, the folder is free again."""
    from producers.commands.run_cmd import DemoFailed, _lock_var

    first = _lock_var(tmp_path)
    with pytest.raises(DemoFailed, match=r"another `vipflow run` is using .*--var DIR"):
        _lock_var(tmp_path)
    first.close()
    _lock_var(tmp_path).close()



def test_stdout_into_a_file_is_line_buffered(tmp_path: Path) -> None:
    """`vipflow run > file`: a line said is in the file at once, while the demo still runs (here: a child
    blocked on its stdin after printing), not when it stops."""
    import sys
    import time

    out = tmp_path / "out.txt"
    code = ("import sys; from producers.commands.run_cmd import line_buffered_stdout; line_buffered_stdout(); "
            "print('the burst is decided:'); sys.stdin.readline()")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with out.open("w") as sink:
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=sink,
                                 cwd=Path(__file__).resolve().parents[2], env=env)
    try:
        deadline = time.monotonic() + 20
        while "the burst is decided:" not in out.read_text() and child.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, "the child ended early"
        assert out.read_text() == "the burst is decided:\n"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def test_the_live_table_keeps_transaction_ids_whole_at_80_columns() -> None:
    """At 80 columns no transaction id (nor amount) is cut or wrapped onto two lines: the rules fold."""
    import io

    from rich.console import Console

    from producers.commands.live_table import Row, _table

    ids = ["sim1t8subri2o44mhf32zc", "sim0u0y27nn00f1qnxa", "op-2026-11-30-000000000123"]
    rows = [Row(tx, "withdraw", "12,345.67", "review", State.REVIEW,
                "standard-withdrawal, high-amount-review, velocity-per-card", ("x",)) for tx in ids]
    screen = io.StringIO()
    Console(file=screen, width=80, color_system=None).print(_table(rows, "3/3 settled: review 3"))
    lines = screen.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    for tx in ids:
        assert sum(tx in line for line in lines) == 1, (tx, screen.getvalue())
    assert sum("12,345.67" in line for line in lines) == 3


def test_the_live_table_says_when_it_shows_only_the_newest_rows() -> None:
    """60 settled: the table shows the newest 25 and its caption says it shows 25 of 60."""
    import io

    from rich.console import Console

    from producers.commands.live_table import Row, _table

    rows = [Row(f"sim{i:04d}", "deposit", "10.00", "approve", State.APPROVED, "standard-deposit", ("x",))
            for i in range(60)]
    screen = io.StringIO()
    Console(file=screen, width=200, color_system=None).print(_table(rows, "60/60 settled: approved 60"))
    text = screen.getvalue()
    assert "the last 25 of 60 shown" in text
    assert "sim0059" in text and "sim0035" in text and "sim0034" not in text


def test_the_live_table_into_a_pipe_keeps_rule_names_whole() -> None:
    """Written into a file (not a terminal: rich would take 80 columns), the table is wide enough that no
    rule name is folded."""
    import io

    from producers.commands.live_table import Row, _table, wide_unless_terminal
    from producers.commands.output import console as make_console

    out = io.StringIO()
    made = make_console(file=out, color_system=None)
    assert not made.is_terminal and made.width == 80
    rules = "above-remaining-daily-deposit-limit, instant-payment-to-ineligible-bank"
    rows = [Row("simvbizuohrpdm", "deposit", "2492.23", "reject", State.REJECTED, rules, ("x",))]
    wide_unless_terminal(made).print(_table(rows, "1/1 settled: rejected 1"))
    assert rules in out.getvalue()
