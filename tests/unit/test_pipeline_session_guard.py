"""The pipeline skips the patron-session read on a first delivery; an open session still decides."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.test_pipeline_flow import World, archive, deposit
from tests.unit.test_pipeline_sessions import _open_session, _required
from tests.unit.test_pipeline_sessions import world as world  # the fixture, shared
from worker import pipeline
from worker.ledger import State


@pytest.fixture(autouse=True)
def _no_session_met() -> Iterator[None]:
    """Each test starts as a process that met no patron session yet (the read is deferred)."""
    pipeline._SESSIONS_MET.at = None
    yield
    pipeline._SESSIONS_MET.at = None


def test_an_open_session_the_first_decision_did_not_read_still_decides(world: World) -> None:
    """A withdraw session, then a deposit notification with its id: rejected as session-type-mismatch,
    never approved, the session's facts on the record and one decision in the ledger (the refused first
    write left nothing)."""
    _open_session(world, "guardpl0001", "withdraw", "100.00")
    rec = pipeline.process(archive(world, "deposit", deposit("guardpl0001")), _required(world, False).deps)
    assert rec is not None and rec.state == State.REJECTED
    assert "session-type-mismatch" in [m["id"] for m in (rec.decision or {})["matched"]]
    assert rec.facts is not None and rec.facts["session"]["found"] is True
    assert world.vip.approvals.get("guardpl0001", 0) == 0
    assert [e.kind for e in world.ledger.events("guardpl0001")].count("decided") == 1
    assert pipeline._SESSIONS_MET.lately()


def test_without_a_session_the_deferred_read_changes_nothing(world: World) -> None:
    """No session: approved as before, session.found false, and the process still defers the read."""
    rec = pipeline.process(archive(world, "deposit", deposit("guardpl0002")), _required(world, False).deps)
    assert rec is not None and rec.state == State.APPROVED
    assert rec.facts is not None and rec.facts["session"]["found"] is False
    assert world.vip.approvals.get("guardpl0002") == 1
    assert not pipeline._SESSIONS_MET.lately()


def test_after_a_session_was_met_sessions_are_read_first(world: World) -> None:
    """Once a session was met, the next one is read before deciding (no refused write): same decision."""
    pipeline._SESSIONS_MET.now()
    _open_session(world, "guardpl0003", "withdraw", "100.00")
    rec = pipeline.process(archive(world, "deposit", deposit("guardpl0003")), _required(world, False).deps)
    assert rec is not None and rec.state == State.REJECTED
    assert rec.facts is not None and rec.facts["session"]["found"] is True
