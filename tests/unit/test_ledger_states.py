"""The state machine: legal moves pass, illegal ones raise naming both states; final and settled states."""

from __future__ import annotations

import itertools

import pytest

from worker.errors import LedgerError
from worker.ledger.record import TransactionRecord
from worker.ledger.states import (
    FINAL,
    SETTLED,
    IllegalTransition,
    State,
    allowed,
    is_final,
    is_settled,
    parse,
    reachable,
    transition,
)

ILLEGAL = [(a, b) for a, b in itertools.product(State, State) if not allowed(a, b)]


def test_there_are_illegal_moves_to_check() -> None:
    """The table forbids some moves (so the parametrized test below is not vacuous)."""
    assert len(ILLEGAL) > 10


@pytest.mark.parametrize(("current", "new"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_every_illegal_transition_raises_naming_both_states(current: State, new: State) -> None:
    """A move the table forbids raises IllegalTransition whose message names the current and the new state."""
    with pytest.raises(IllegalTransition) as caught:
        transition(current, new, "tx-1")
    assert (caught.value.current, caught.value.new) == (str(current), str(new))
    assert f"{current} -> {new}" in str(caught.value) and "tx-1" in str(caught.value)


@pytest.mark.parametrize(("current", "new"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_a_record_refuses_an_illegal_move(current: State, new: State) -> None:
    """TransactionRecord.moved goes through the state machine and raises instead of overwriting."""
    rec = TransactionRecord("tx-1", state=current)
    with pytest.raises(IllegalTransition):
        rec.moved(new)


def test_the_happy_path_of_a_withdrawal_is_legal() -> None:
    """received -> decided -> frozen -> approving -> approved is allowed step by step."""
    path = [State.RECEIVED, State.DECIDED, State.FROZEN, State.APPROVING, State.APPROVED]
    rec = TransactionRecord("tx-1")
    for nxt in path[1:]:
        rec = rec.moved(nxt)
    assert rec.state == State.APPROVED


@pytest.mark.parametrize(("current", "new"), [
    (State.APPROVED, State.APPROVING), (State.APPROVED, State.REVIEW), (State.REJECTED, State.APPROVED),
    (State.APPROVING, State.REJECTED), (State.FAILED, State.RECEIVED), (State.DECIDED, State.APPROVED),
])
def test_known_dangerous_moves_are_forbidden(current: State, new: State) -> None:
    """Moves that would re-open or skip an approval are not in the table."""
    assert not allowed(current, new)


@pytest.mark.parametrize("state", list(State))
def test_staying_in_a_state_is_always_allowed(state: State) -> None:
    """Writing a record again in the same state is never an illegal transition."""
    assert transition(state, state) == state


@pytest.mark.parametrize("state", sorted(FINAL))
def test_a_final_state_leads_only_to_failed(state: State) -> None:
    """From a final state the only move left is VIP Connect's error notification (to failed)."""
    assert {n for n in State if n != state and allowed(state, n)} <= {State.FAILED}
    assert is_final(state) and is_settled(state)


def test_settled_is_final_plus_review() -> None:
    """Settled states are the final ones and review, nothing else."""
    assert FINAL | {State.REVIEW} == SETTLED
    assert is_settled(State.REVIEW) and not is_final(State.REVIEW)


@pytest.mark.parametrize("state", [s for s in State if s not in SETTLED])
def test_a_state_in_progress_is_neither_final_nor_settled(state: State) -> None:
    """States where the worker still has work to do are neither final nor settled."""
    assert not is_final(state) and not is_settled(state)


def test_received_can_reach_every_state() -> None:
    """Every state is reachable from received (no state is dead code in the table)."""
    assert all(reachable(State.RECEIVED, s) for s in State)


def test_reachable_folds_several_steps() -> None:
    """A write that folds several steps (received to approved) is reachable though not one move."""
    assert reachable(State.RECEIVED, State.APPROVED) and not allowed(State.RECEIVED, State.APPROVED)


def test_nothing_leads_back_from_approved_to_review() -> None:
    """An approved transaction can never come back to a person's queue, however many steps."""
    assert not reachable(State.APPROVED, State.REVIEW)
    assert not reachable(State.APPROVED, State.APPROVING)


def test_failed_reaches_only_itself() -> None:
    """Failed is the end: no state but itself is reachable from it."""
    assert [s for s in State if reachable(State.FAILED, s)] == [State.FAILED]


def test_an_unknown_state_name_is_refused() -> None:
    """A state name the machine does not know raises LedgerError listing the known ones."""
    with pytest.raises(LedgerError, match="not a transaction state") as caught:
        parse("settled")
    assert "approved" in str(caught.value)
