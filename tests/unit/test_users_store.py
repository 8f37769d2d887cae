"""Workspace users in the ledger (worker.ledger.users): argon2id hashes, disabling and resetting end
sessions (the epoch grows), and every change is a workspace event with its actor."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from worker.ledger import Ledger
from worker.ledger import tables as t
from worker.ledger.users import UserRefused, UserStore
from worker.review_roles import Role

PASSWORD = "correct horse battery"


@pytest.fixture
def store(ledger: Ledger) -> UserStore:
    return UserStore(ledger.engine)


def test_a_password_is_kept_only_as_an_argon2id_hash(store: UserStore, ledger: Ledger) -> None:
    """The users table holds an argon2id PHC string, never the password."""
    store.add("alice", Role.REVIEWER, PASSWORD, "os:test")
    with ledger.engine.connect() as conn:
        stored = conn.execute(select(t.users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_authenticate_takes_the_right_password_only(store: UserStore) -> None:
    """The right password gives the user; a wrong one or an unknown name gives None."""
    store.add("alice", Role.REVIEWER, PASSWORD, "os:test", limit=Decimal("2000"))
    user = store.authenticate("alice", PASSWORD)
    assert user is not None and user.actor == "user:alice" and user.review_limit == Decimal("2000.00")
    assert store.authenticate("alice", PASSWORD + "!") is None
    assert store.authenticate("mallory", PASSWORD) is None


def test_disable_refuses_logins_and_ends_sessions(store: UserStore) -> None:
    """A disabled user cannot log in and their session epoch grows; enable lets them in again."""
    before = store.add("alice", Role.REVIEWER, PASSWORD, "os:test")
    after = store.disable("alice", "user:admin")
    assert not after.active and after.session_epoch == before.session_epoch + 1
    assert store.authenticate("alice", PASSWORD) is None
    store.enable("alice", "user:admin")
    assert store.authenticate("alice", PASSWORD) is not None


def test_reset_changes_the_password_role_and_ends_sessions(store: UserStore) -> None:
    """After a reset the old password fails, the new one works, and the role changed."""
    store.add("alice", Role.REVIEWER, PASSWORD, "os:test")
    user = store.reset("alice", "another long passphrase", "os:test", role=Role.SENIOR)
    assert user.role == Role.SENIOR and user.session_epoch == 2
    assert store.authenticate("alice", PASSWORD) is None
    assert store.authenticate("alice", "another long passphrase") is not None


def test_bad_names_passwords_and_duplicates_are_refused(store: UserStore) -> None:
    """Each refusal names what is wrong."""
    with pytest.raises(UserRefused, match="user name 'Alice'"):
        store.add("Alice", Role.VIEWER, PASSWORD, "os:test")
    with pytest.raises(UserRefused, match="at least 12 characters"):
        store.add("alice", Role.VIEWER, "short", "os:test")
    store.add("alice", Role.VIEWER, PASSWORD, "os:test")
    with pytest.raises(UserRefused, match="'alice' exists already"):
        store.add("alice", Role.SENIOR, PASSWORD, "os:test")
    with pytest.raises(UserRefused, match="no user named 'bob'"):
        store.disable("bob", "os:test")


def test_every_change_is_a_workspace_event_with_its_actor(store: UserStore, ledger: Ledger) -> None:
    """add, disable and reset are recorded with who did them, never the password."""
    store.add("alice", Role.REVIEWER, PASSWORD, "os:root")
    store.disable("alice", "user:admin")
    store.reset("alice", "another long passphrase", "os:root")
    c = t.workspace_events.c
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(c.actor, c.action, c.subject, c.data).order_by(c.id)).all()
    assert [(r.actor, r.action, r.subject) for r in rows] == [
        ("os:root", "user_add", "alice"), ("user:admin", "user_disable", "alice"), ("os:root", "user_reset", "alice")]
    assert all(PASSWORD not in str(r.data) for r in rows)
