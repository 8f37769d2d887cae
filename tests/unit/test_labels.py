"""Outcome labels: the label vocabulary, the CSV checks, recording a batch in the ledger (SQLite and
PostgreSQL) all or nothing, and the labels commands."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from producers.cli import main
from worker.labels.codes import RETURN_CODES, UnknownLabel, canonical, describe, kind_of, verdict
from worker.labels.parse import LabelRow, LabelsRefused, parse_csv
from worker.labels.store import LabelStore
from worker.ledger import Ledger, TransactionRecord
from worker.ledger import tables as t

TODAY = datetime.now(UTC).date()


# --- the vocabulary ---------------------------------------------------------------------------------

def test_the_return_codes_are_nachas_whole_list_with_their_names() -> None:
    """R01..R85 as the Nacha Operating Rules number them (no R48-R49, R54-R60, R63-R66, R78-R79), named."""
    expected = ({f"R{n:02d}" for n in range(1, 86)}
                - {f"R{n:02d}" for n in (48, 49, *range(54, 61), 63, 64, 65, 66, 78, 79)})
    assert set(RETURN_CODES) == expected
    assert RETURN_CODES["R01"].name == "Insufficient Funds" and RETURN_CODES["R02"].name == "Account Closed"
    assert RETURN_CODES["R10"].group == RETURN_CODES["R29"].group == "unauthorized"
    assert RETURN_CODES["R10"].window == "60d" and RETURN_CODES["R01"].window == "2bd"
    assert describe("R03") == "R03 No Account/Unable to Locate Account"


def test_labels_are_folded_to_one_spelling_and_unknown_ones_refused() -> None:
    """Case and the short aliases fold to the canonical label; an unused code or a word is refused, saying
    what is accepted."""
    assert canonical(" r01 ") == "R01" and canonical("Fraud") == "confirmed_fraud"
    assert canonical("confirmed good") == "confirmed_good" and canonical("CHARGEBACK") == "chargeback"
    for word in ("R00", "R48", "R99"):
        with pytest.raises(UnknownLabel, match="not a NACHA return reason code"):
            canonical(word)
    with pytest.raises(UnknownLabel, match="chargeback, confirmed_fraud or confirmed_good"):
        canonical("returned")


def test_every_label_but_confirmed_good_is_bad() -> None:
    """Returns, chargebacks and fraud are bad; confirmed good is good."""
    assert {verdict(x) for x in ("R01", "R29", "R61", "chargeback", "confirmed_fraud")} == {"bad"}
    assert verdict("confirmed_good") == "good"
    assert (kind_of("R10"), kind_of("chargeback"), kind_of("confirmed_fraud")) == ("ach_return", "chargeback", "fraud")


# --- the CSV file ------------------------------------------------------------------------------------

def test_a_header_may_name_and_order_the_columns_and_extra_ones_are_ignored() -> None:
    """With a header the columns are found by name (other columns ignored); lines keep their numbers."""
    rows = parse_csv(b"Date,Bank Ref,Transaction ID,Label\n\n2026-11-02,x1,tx000001,r01\n"
                     b"2026-11-03T23:30:00-05:00,x2,tx000002,good\n", "f.csv")
    assert rows == [LabelRow("f.csv:3", 3, "tx000001", "R01", date(2026, 11, 2)),
                    LabelRow("f.csv:4", 4, "tx000002", "confirmed_good", date(2026, 11, 4))]


def test_without_a_header_the_columns_are_id_label_date() -> None:
    """No header: transaction id, label, date, in that order."""
    assert parse_csv(b"tx000001,chargeback,2026-10-01\r\n", "f.csv")[0].label == "chargeback"


def test_every_bad_row_is_named_by_its_line() -> None:
    """Each problem names its line: a missing cell, an unknown label, a bad date, a repeated transaction."""
    data = (b"transaction_id,label,date\ntx000001,R01,2026-11-02\ntx000002,R01\ntx000003,R42x,2026-11-02\n"
            b"tx000004,R02,02/11/2026\ntx000005,R02,2026-02-30\ntx000001,R10,2026-11-03\n")
    with pytest.raises(LabelsRefused) as refused:
        parse_csv(data, "f.csv")
    assert [p.render() for p in refused.value.problems] == [
        "f.csv:3: 2 columns, expected transaction_id,label,date",
        "f.csv:4: 'R42x' is not a label; use a NACHA return code (R01 ... R85), chargeback, confirmed_fraud or "
        "confirmed_good",
        "f.csv:5: date '02/11/2026' is not a date; write it as YYYY-MM-DD",
        "f.csv:6: date '2026-02-30' is not a calendar date",
        "f.csv:7: transaction 'tx000001' is labelled already at f.csv:2; one label per transaction in a batch",
    ]
    assert str(refused.value).endswith("nothing was recorded")


def test_a_card_number_in_the_wrong_column_is_masked_in_the_message() -> None:
    """A patron's card number typed where the label goes is shown only by its last four digits."""
    with pytest.raises(LabelsRefused) as refused:
        parse_csv(b"tx000001,7210695258,2026-11-02\n", "f.csv")
    assert "7210695258" not in str(refused.value) and "5258" in str(refused.value)


def test_a_file_that_is_not_utf8_or_empty_or_lacks_a_column_is_refused() -> None:
    """Not UTF-8 (named by line), no rows at all, and a header without a label column are refused."""
    with pytest.raises(LabelsRefused, match=r"f\.csv:2: the file is not UTF-8"):
        parse_csv(b"tx000001,R01,2026-11-02\ntx\xff,R01,2026-11-02\n", "f.csv")
    with pytest.raises(LabelsRefused, match="no labels in the file"):
        parse_csv(b"\n\n", "f.csv")
    with pytest.raises(LabelsRefused, match=r"f\.csv:1: the header has no label column"):
        parse_csv(b"transaction_id,date\ntx000001,2026-11-02\n", "f.csv")


# --- the ledger ----------------------------------------------------------------------------------------

@pytest.fixture
def ledger_db(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as led:
        for txid in ("tx000001", "tx000002", "tx000003"):
            led.write(None, TransactionRecord(transaction_id=txid))
        yield led


def row(line: int, txid: str, label: str, on: date = TODAY) -> LabelRow:
    return LabelRow(f"f.csv:{line}", line, txid, label, on)


def count(led: Ledger, table: object) -> int:
    with led.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_a_batch_is_recorded_whole_with_its_actor(ledger_db: Ledger) -> None:
    """Every row is recorded in one import that names its actor and file; the latest label is shown last."""
    store = LabelStore(ledger_db.engine)
    result = store.record([row(1, "tx000001", "confirmed_good"), row(2, "tx000002", "R01")], actor="os:alice",
                          source="csv", sha256="0" * 64, name="f.csv")
    assert (result.rows, result.recorded, result.already) == (2, 2, 0)
    store.record([row(1, "tx000001", "R10")], actor="token:bank", source="api", sha256="1" * 64)
    labels = store.of("tx000001")
    assert [(x.label, x.kind, x.actor, x.source, x.name) for x in labels] == [
        ("confirmed_good", "good", "os:alice", "csv", "f.csv"), ("R10", "ach_return", "token:bank", "api", None)]
    assert labels[0].occurred_on == TODAY


def test_one_refused_row_records_nothing(ledger_db: Ledger) -> None:
    """An unknown transaction, a date before the transaction or in the future: each named, nothing recorded."""
    store = LabelStore(ledger_db.engine)
    long_ago, later = TODAY - timedelta(days=30), TODAY + timedelta(days=3)
    with pytest.raises(LabelsRefused) as refused:
        store.record([row(1, "tx000001", "R01"), row(2, "nosuchtx", "R01"), row(3, "tx000002", "R01", long_ago),
                      row(4, "tx000003", "R01", later)], actor="os:alice", source="csv", sha256="0" * 64)
    assert [p.where for p in refused.value.problems] == ["f.csv:2", "f.csv:3", "f.csv:4"]
    assert "no transaction 'nosuchtx' in the ledger" in refused.value.problems[0].message
    assert "is before the transaction reached vipflow" in refused.value.problems[1].message
    assert "in the future" in refused.value.problems[2].message
    assert count(ledger_db, t.labels) == count(ledger_db, t.label_imports) == 0


def test_the_parses_problems_and_the_ledgers_are_refused_together_by_line(ledger_db: Ledger) -> None:
    """Problems found by the parse are refused with the ledger's problems with the rows that parsed, in line
    order; nothing is recorded."""
    from worker.labels.parse import Problem

    store = LabelStore(ledger_db.engine)
    with pytest.raises(LabelsRefused) as refused:
        store.record([row(1, "tx000001", "R01"), row(4, "nosuchtx", "R01")], actor="os:alice", source="csv",
                     sha256="0" * 64, problems=[Problem("f.csv:2", "malformed"), Problem("f.csv:5", "malformed")])
    assert [p.where for p in refused.value.problems] == ["f.csv:2", "f.csv:4", "f.csv:5"]
    assert count(ledger_db, t.labels) == count(ledger_db, t.label_imports) == 0


def test_the_same_labels_again_are_not_recorded_twice(ledger_db: Ledger) -> None:
    """Importing a batch twice records its labels once; the second import is kept, with 0 recorded."""
    store = LabelStore(ledger_db.engine)
    batch = [row(1, "tx000001", "R01"), row(2, "tx000002", "confirmed_good")]
    store.record(batch, actor="os:alice", source="csv", sha256="0" * 64)
    again = store.record(batch, actor="os:alice", source="csv", sha256="0" * 64)
    assert (again.recorded, again.already) == (0, 2)
    assert count(ledger_db, t.labels) == 2 and count(ledger_db, t.label_imports) == 2


def test_labels_are_append_only(ledger_db: Ledger) -> None:
    """The database refuses to change a recorded label."""
    LabelStore(ledger_db.engine).record([row(1, "tx000001", "R01")], actor="os:alice", source="csv",
                                        sha256="0" * 64)
    with pytest.raises(SQLAlchemyError, match="append-only"), ledger_db.engine.begin() as conn:
        conn.execute(text("UPDATE labels SET label = 'confirmed_good'"))


def test_prune_takes_a_transactions_labels_with_it(ledger_db: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """`db prune` deletes a final transaction's labels with it; the import's audit row stays."""
    from worker.ledger import prune as pruning
    from worker.ledger.states import State

    ledger_db.write(None, TransactionRecord(transaction_id="txold0001", state=State.REJECTED))
    LabelStore(ledger_db.engine).record([row(1, "txold0001", "confirmed_good")], actor="os:alice",
                                        source="csv", sha256="0" * 64)
    later = time.time() + 400 * 86_400
    monkeypatch.setattr(pruning, "now", lambda: later)
    report = pruning.prune(ledger_db.engine, retention_days=365, actor="os:alice")
    assert report.transactions == 1
    assert count(ledger_db, t.labels) == 0 and count(ledger_db, t.label_imports) == 1


# --- the commands --------------------------------------------------------------------------------------

@pytest.fixture
def cli_ledger(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv("VIPFLOW_DATABASE__URL", sqlite_url)
    monkeypatch.delenv("VIPFLOW_CONFIG", raising=False)
    with Ledger.open(sqlite_url) as led:
        led.write(None, TransactionRecord(transaction_id="tx000001"))
        yield led


def test_labels_import_prints_what_it_recorded(cli_ledger: Ledger, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`labels import FILE --json` records the file and says so; `labels show` lists it with its actor."""
    path = tmp_path / "returns.csv"
    path.write_text(f"tx000001,R01,{TODAY.isoformat()}\n")
    assert main(["labels", "import", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) | {"import_id": 0} == {
        "file": "returns.csv", "import_id": 0, "rows": 1, "recorded": 1, "already": 0}
    assert main(["labels", "show", "tx000001"]) == 0
    shown = capsys.readouterr().out
    assert "R01 Insufficient Funds" in shown and "by os:" in shown and "(csv returns.csv)" in shown


def test_labels_import_reads_standard_input_given_a_dash(cli_ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`labels import -` reads the CSV from standard input and names it `stdin`."""
    import io
    import sys

    data = f"tx000001,chargeback,{TODAY.isoformat()}\n".encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["labels", "import", "-"]) == 0
    assert capsys.readouterr().out.startswith("stdin: 1 label recorded")


def test_labels_import_of_a_bad_file_exits_2_naming_each_line(cli_ledger: Ledger, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A bad row: exit 2, one stderr line per problem (FILE:LINE), then that nothing was recorded."""
    path = tmp_path / "returns.csv"
    path.write_text(f"tx000001,R01,{TODAY.isoformat()}\ntx000002,R01,{TODAY.isoformat()}\n")
    assert main(["labels", "import", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["vipflow labels: returns.csv:2: no transaction 'tx000002' in the ledger; label only transactions "
                   "vipflow received (see `vipflow tx show ID`)",
                   "vipflow labels: 1 problem in returns.csv; nothing of it was recorded"]
    assert count(cli_ledger, t.labels) == 0
    assert main(["labels", "import", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_labels_import_names_format_and_ledger_problems_in_one_pass(cli_ledger: Ledger, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Malformed rows and rows the ledger refuses (unknown transaction, a date in the future, a date before the
    transaction arrived) are all named in one run, sorted by line; nothing is recorded."""
    for txid in ("tx000002", "tx000003", "tx000004", "tx000005"):
        cli_ledger.write(None, TransactionRecord(transaction_id=txid))
    day, later, long_ago = TODAY.isoformat(), (TODAY + timedelta(days=5)).isoformat(), "2020-01-01"
    path = tmp_path / "returns.csv"
    path.write_text(f"transaction_id,label,date\ntx000001,R01,{day}\nnosuchtx,R01,{day}\ntx000002,R99,{day}\n"
                    f"tx000003,R01,{later}\ntx000004,R01\ntx000005,R01,{long_ago}\ntx000001,R01,yesterday\n")
    assert main(["labels", "import", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 2)[1] for line in err[:-1]] == [f"returns.csv:{n}" for n in (3, 4, 5, 6, 7, 8)]
    assert "no transaction 'nosuchtx' in the ledger" in err[0]
    assert "not a NACHA return reason code" in err[1]
    assert "in the future" in err[2]
    assert "2 columns, expected" in err[3]
    assert "is before the transaction reached vipflow" in err[4]
    assert "is not a date" in err[5]
    assert err[-1] == "vipflow labels: 6 problems in returns.csv; nothing of it was recorded"
    assert count(cli_ledger, t.labels) == 0


def test_labels_codes_lists_every_label(capsys: pytest.CaptureFixture[str]) -> None:
    """`labels codes --json` gives every return code and the three other labels, each with its verdict."""
    assert main(["labels", "codes", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(RETURN_CODES) + 3
    assert {r["label"]: r["verdict"] for r in rows}["confirmed_good"] == "good"


def test_rules_report_refuses_a_bad_window(cli_ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    """--since that is not a time, or --until before --since: exit 2 naming the option."""
    assert main(["rules", "report", "--since", "yesterday"]) == 2
    assert "--since: 'yesterday' is not an ISO time" in capsys.readouterr().err
    assert main(["rules", "report", "--since", "2026-11-02", "--until", "2026-11-01"]) == 2
    assert "--until" in capsys.readouterr().err


def test_tx_show_lists_the_transactions_labels(cli_ledger: Ledger, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`tx show` ends with the transaction's labels, oldest first, each with its actor; --json has them too."""
    path = tmp_path / "returns.csv"
    path.write_text(f"tx000001,confirmed_good,{TODAY.isoformat()}\n")
    assert main(["labels", "import", str(path)]) == 0
    path.write_text(f"tx000001,R10,{TODAY.isoformat()}\n")
    assert main(["labels", "import", str(path)]) == 0
    capsys.readouterr()
    assert main(["tx", "show", "tx000001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("labels (what happened after the decision; the last is the transaction's label):")
    assert "confirmed_good" in lines[start + 1] and "R10 Customer Advises" in lines[start + 2]
    assert main(["tx", "show", "tx000001", "--json"]) == 0
    assert [lab["label"] for lab in json.loads(capsys.readouterr().out)["labels"]] == ["confirmed_good", "R10"]
