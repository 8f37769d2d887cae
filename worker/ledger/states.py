"""The transaction state machine: the one place that names the states, the moves between them,
and which states are final.

Every state change of a transaction goes through :func:`transition`; a move the
table below does not allow raises :class:`IllegalTransition` naming both states
instead of overwriting what the ledger says.

::

    received -> decided -> frozen -> approving -> approved
        |          |          |          +--> capturing -> approved  (a withdrawal's hold is captured)
        |          |          |          +--> crediting -> approved  (a deposit is credited to the wallet)
        +----------+----------+----------+--> review   (a person decides)
        +----------+----------+----------------> rejected (not approving is rejecting)
        +----------+----------+----------+--> expired  (left waiting past wallet.hold_max_age_s; any hold
                                                        released)
    any state -----------------------------------> failed (VIP Connect's error notification; a hold still
                                                           held is released, a captured one reversed)
    review -> frozen | approving | capturing | crediting | approved | rejected | expired
                                                          (the reviewer's verdict, or expiry)
    capturing | crediting -> review                       (the wallet keeps failing: a person looks)
    review | received -> received                         (replay --force: decided again;
                                                           the earlier events stay)
"""

from __future__ import annotations

from enum import StrEnum

from worker.errors import LedgerError


class State(StrEnum):
    """Where one transaction stands; stored in the ledger's ``transactions.state`` column."""

    RECEIVED = "received"  # a notification is in the ledger; nothing decided yet
    DECIDED = "decided"  # the rules decided; no action has finished yet
    FROZEN = "frozen"  # the withdrawal's funds are held in the wallet
    APPROVING = "approving"  # the approval call to VIP Connect has started
    CAPTURING = "capturing"  # VIP Connect accepted a withdrawal's approval; its hold is being captured
    CREDITING = "crediting"  # VIP Connect accepted a deposit's approval; the wallet is being credited
    APPROVED = "approved"  # VIP Connect accepted the approval (and the wallet is settled)
    REVIEW = "review"  # waiting for a person
    REJECTED = "rejected"  # not approved (and any hold released)
    FAILED = "failed"  # VIP Connect reported an error for the transaction
    EXPIRED = "expired"  # left waiting past wallet.hold_max_age_s; any hold released


# Final: the transaction's outcome is known and nothing more happens automatically. Only VIP
# Connect's error notification still moves a final transaction (to ``failed``).
FINAL: frozenset[State] = frozenset({State.APPROVED, State.REJECTED, State.FAILED, State.EXPIRED})
# Settled: nothing more happens without a person (final, or waiting in review).
SETTLED: frozenset[State] = FINAL | {State.REVIEW}

# In flight: an action is under way (funds held, the approval call started, or the wallet being settled
# after VIP approved); a task or a reviewer's approval passes through these on its way to a final state.
IN_FLIGHT: frozenset[State] = frozenset({State.FROZEN, State.APPROVING, State.CAPTURING, State.CREDITING})
# VIP Connect approved; only the wallet's side (capture or credit) is still to be done.
SETTLING: frozenset[State] = frozenset({State.CAPTURING, State.CREDITING})
# What expiry may end: waiting for an action or a person, with no approval known to VIP Connect
# (``approving`` is asked of VIP's lookup first; ``capturing``/``crediting`` are never expired).
EXPIRABLE: frozenset[State] = frozenset({State.RECEIVED, State.DECIDED, State.FROZEN, State.APPROVING,
                                         State.REVIEW})

_ALLOWED: dict[State, frozenset[State]] = {
    State.RECEIVED: frozenset({State.RECEIVED, State.DECIDED, State.REVIEW, State.REJECTED, State.FAILED,
                               State.EXPIRED}),
    State.DECIDED: frozenset({State.FROZEN, State.APPROVING, State.REVIEW, State.REJECTED, State.FAILED,
                              State.EXPIRED}),
    State.FROZEN: frozenset({State.APPROVING, State.REVIEW, State.REJECTED, State.FAILED, State.EXPIRED}),
    State.APPROVING: frozenset({State.APPROVED, State.CAPTURING, State.CREDITING, State.REVIEW, State.FAILED,
                                State.EXPIRED}),
    State.CAPTURING: frozenset({State.APPROVED, State.REVIEW, State.FAILED}),
    State.CREDITING: frozenset({State.APPROVED, State.REVIEW, State.FAILED}),
    State.REVIEW: frozenset({State.RECEIVED, State.FROZEN, State.APPROVING, State.CAPTURING, State.CREDITING,
                             State.APPROVED, State.REJECTED, State.FAILED, State.EXPIRED}),
    State.APPROVED: frozenset({State.FAILED}),
    State.REJECTED: frozenset({State.FAILED}),
    State.EXPIRED: frozenset({State.FAILED}),
    State.FAILED: frozenset(),
}


class IllegalTransition(LedgerError):
    """A state change the state machine does not allow; names both states."""

    def __init__(self, current: str, new: str, transaction_id: str | None = None):
        self.current, self.new = current, new
        where = f" for transaction {transaction_id}" if transaction_id else ""
        super().__init__(f"illegal state change {current} -> {new}{where}; the ledger keeps {current}")


def parse(value: str) -> State:
    """The State named ``value``; LedgerError when it is none of them."""
    try:
        return State(value)
    except ValueError:
        raise LedgerError(f"{value!r} is not a transaction state ({', '.join(State)})") from None


def allowed(current: State | str, new: State | str) -> bool:
    """True when ``current -> new`` is a legal move (staying in the same state always is)."""
    cur, nxt = parse(str(current)), parse(str(new))
    return cur == nxt or nxt in _ALLOWED[cur]


def reachable(current: State | str, new: State | str) -> bool:
    """True when ``new`` can follow ``current`` through legal moves (a write that folds several steps)."""
    start, goal = parse(str(current)), parse(str(new))
    seen, todo = {start}, [start]
    while todo:
        for nxt in _ALLOWED[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return goal in seen


def transition(current: State | str, new: State | str, transaction_id: str | None = None) -> State:
    """The new state, after checking the move; IllegalTransition when the table does not allow it."""
    if not allowed(current, new):
        raise IllegalTransition(str(current), str(new), transaction_id)
    return parse(str(new))


def is_final(state: State | str) -> bool:
    """True for approved, rejected, failed and expired."""
    return parse(str(state)) in FINAL


def is_settled(state: State | str) -> bool:
    """True when nothing more happens without a person: final, or in review."""
    return parse(str(state)) in SETTLED
