"""The review workspace's role checks (worker.review_roles): who may view, claim, reveal, decide, give
the second approval of four eyes, and manage users; a reviewer's limit; when four eyes apply."""

from __future__ import annotations

from decimal import Decimal

import pytest

from worker.errors import InputError
from worker.review_roles import (
    MAX_AMOUNT,
    Forbidden,
    Permission,
    Reviewer,
    Role,
    can,
    check_decide,
    check_limit,
    check_second_approval,
    decision_limit,
    needs_four_eyes,
    parse_amount,
    parse_limit,
    parse_role,
    require,
)

LIMIT = Decimal("5000.00")
GRANTS = {
    Role.VIEWER: {Permission.VIEW},
    Role.REVIEWER: {Permission.VIEW, Permission.CLAIM, Permission.REVEAL, Permission.DECIDE},
    Role.SENIOR: {Permission.VIEW, Permission.CLAIM, Permission.REVEAL, Permission.DECIDE,
                  Permission.SECOND_APPROVAL},
    Role.ADMIN: {Permission.VIEW, Permission.MANAGE_USERS},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_each_role_holds_exactly_its_permissions(role: Role, permission: Permission) -> None:
    """The grants table: every (role, permission) pair answers as documented."""
    assert can(role, permission) is (permission in GRANTS[role])


def test_require_names_the_roles_that_may() -> None:
    """A refused check says what the user's role is and which roles may."""
    with pytest.raises(Forbidden, match="a viewer may not approve transactions; that needs the role reviewer, senior"):
        require(Role.VIEWER, Permission.DECIDE, "approve transactions")


def test_a_viewer_cannot_decide_any_amount() -> None:
    """A viewer is refused even a one-dollar decision."""
    with pytest.raises(Forbidden, match="viewer may not"):
        check_decide(Reviewer("user:v", Role.VIEWER), Decimal("1.00"), LIMIT, "approve")


def test_an_admin_cannot_decide() -> None:
    """Whoever manages accounts does not move money."""
    with pytest.raises(Forbidden, match="admin may not"):
        check_decide(Reviewer("user:a", Role.ADMIN), Decimal("1.00"), LIMIT, "reject")


def test_a_reviewer_decides_up_to_the_limit_exactly() -> None:
    """At the limit is allowed; one cent above is refused, naming the limit."""
    who = Reviewer("user:r", Role.REVIEWER)
    check_decide(who, LIMIT, LIMIT, "approve")
    with pytest.raises(Forbidden, match=r"5000\.01 is above your limit of 5000\.00; a senior reviewer must approve"):
        check_decide(who, LIMIT + Decimal("0.01"), LIMIT, "approve")


def test_a_reviewers_own_limit_replaces_the_configured_one() -> None:
    """A user's limit (users add --limit) wins over review.reviewer_limit, lower or higher."""
    low = Reviewer("user:r", Role.REVIEWER, Decimal("100.00"))
    assert decision_limit(low, LIMIT) == Decimal("100.00")
    with pytest.raises(Forbidden):
        check_decide(low, Decimal("100.01"), LIMIT, "reject")
    check_decide(Reviewer("user:r", Role.REVIEWER, Decimal("9000")), Decimal("8999.99"), LIMIT, "approve")


def test_an_unknown_amount_is_for_a_senior() -> None:
    """A transaction whose amount is unknown is above every reviewer's limit, and needs four eyes."""
    with pytest.raises(Forbidden, match="an unknown amount"):
        check_decide(Reviewer("user:r", Role.REVIEWER), None, LIMIT, "approve")
    check_decide(Reviewer("user:s", Role.SENIOR), None, LIMIT, "approve")
    assert needs_four_eyes(None, Decimal("10000"))


def test_a_senior_has_no_limit() -> None:
    """A senior decides any amount."""
    senior = Reviewer("user:s", Role.SENIOR, Decimal("1.00"))
    assert decision_limit(senior, LIMIT) is None
    check_decide(senior, Decimal("999999.99"), LIMIT, "approve")


def test_four_eyes_start_above_the_amount() -> None:
    """review.four_eyes_amount itself needs one approval; a cent more needs two."""
    assert not needs_four_eyes(Decimal("10000.00"), Decimal("10000.00"))
    assert needs_four_eyes(Decimal("10000.01"), Decimal("10000.00"))


def test_the_second_approval_needs_a_different_senior() -> None:
    """The first approver cannot give the second; a reviewer cannot either; another senior can."""
    with pytest.raises(Forbidden, match="you gave the first approval"):
        check_second_approval(Reviewer("user:s1", Role.SENIOR), "user:s1")
    with pytest.raises(Forbidden, match="reviewer may not give the second approval"):
        check_second_approval(Reviewer("user:r", Role.REVIEWER), "user:s1")
    check_second_approval(Reviewer("user:s2", Role.SENIOR), "user:s1")


def test_roles_and_amounts_parse_strictly() -> None:
    """A role is one of four; an amount is non-negative dollars with at most two decimals."""
    assert parse_role(" Senior ") == Role.SENIOR
    with pytest.raises(InputError, match="role 'boss' is not one of: viewer, reviewer, senior, admin"):
        parse_role("boss")
    assert parse_amount("1500.5", "--limit") == Decimal("1500.5")
    for bad in ("-1", "1.001", "NaN", "lots", "Infinity"):
        with pytest.raises(InputError, match="--limit"):
            parse_amount(bad, "--limit")


@pytest.mark.parametrize("typed", ["1e309", "99999999999999999999999999999", "1e20", "1000000000", "0", "-0.01",
                                   "0.001", "1e-999999", "sNaN", "-Infinity", "", "12 dollars"])
def test_a_limit_out_of_range_is_refused_naming_the_range_never_a_decimal_error(typed: str) -> None:
    """--limit 1e309 or 29 nines raised decimal.InvalidOperation (a traceback, an HTTP 500); now any text
    outside 0.01..999,999,999.99 or with more than two decimals is an InputError naming the option and the
    range."""
    with pytest.raises(InputError, match=r"^--limit: .* is not an amount from 0\.01 to 999,999,999\.99 dollars"):
        parse_limit(typed, "--limit")


def test_a_limit_in_range_is_exact_dollars() -> None:
    """The bounds are inclusive; 1e3 is 1000 dollars; what is typed is not echoed past 40 characters."""
    assert parse_limit("0.01", "limit") == Decimal("0.01")
    assert parse_limit(" 999999999.99 ", "limit") == MAX_AMOUNT
    assert parse_limit("1e3", "limit") == Decimal("1000")
    with pytest.raises(InputError) as caught:
        parse_limit("9" * 500, "limit")
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("role", [Role.SENIOR, Role.VIEWER, Role.ADMIN])
def test_only_a_reviewer_has_a_limit(role: Role) -> None:
    """A limit given for a senior (any amount), a viewer or an admin (none) means nothing: refused, naming the
    role with its article ("an admin"); none at all is fine for every role."""
    with pytest.raises(InputError, match=f"--limit applies to reviewers only \\({'an' if role == Role.ADMIN else 'a'} "
                                          f"{role.value} decides"):
        check_limit(role, Decimal("100"), "--limit")
    assert check_limit(role, None) is None
    assert check_limit(Role.REVIEWER, Decimal("100")) == Decimal("100")
    with pytest.raises(InputError, match="limit: '1E\\+20'"):
        check_limit(Role.REVIEWER, Decimal("1e20"))


def test_an_admin_is_refused_with_an_article_that_fits() -> None:
    """An admin is "an admin may not ...", never "a admin"."""
    with pytest.raises(Forbidden, match=r"^an admin may not claim transactions"):
        require(Role.ADMIN, Permission.CLAIM, "claim transactions")
