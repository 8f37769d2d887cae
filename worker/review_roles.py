"""Who may do what in the review workspace: the roles, their permissions, a reviewer's limit, four eyes.

Pure functions of a role, an amount and the configuration (no I/O), so that the web pages and the
service that decides under the transaction's lock ask the same questions and get the same answers.

=========  ============================================================================
role       may
=========  ============================================================================
viewer     see the queue, transactions (personal data masked) and the audit
reviewer   also claim, reveal a masked field, approve or reject up to their limit
           (``review.reviewer_limit`` or their own), give a first approval above
           ``review.four_eyes_amount`` when that is within their limit
senior     also decide any amount, and give the second approval of a four-eyes one
admin      see everything a viewer sees; add, disable and reset users. An admin does
           not decide: whoever manages the accounts should not also move the money
=========  ============================================================================

Four eyes (``review.four_eyes_amount``, Decimal dollars): an approval of an amount above it needs a
second approval by a senior reviewer who is not the first approver before VIP Connect is called.
A rejection never needs a second pair of eyes (it moves no money; it releases a hold).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from worker.errors import InputError
from worker.wording import a


class Role(StrEnum):
    """A workspace user's role (stored in ``users.role``)."""

    VIEWER = "viewer"
    REVIEWER = "reviewer"
    SENIOR = "senior"
    ADMIN = "admin"


class Permission(StrEnum):
    """One thing a page or the service checks before it acts."""

    VIEW = "view"  # the queue, a transaction (masked), the audit
    CLAIM = "claim"
    REVEAL = "reveal"  # show one masked field of a transaction (recorded)
    DECIDE = "decide"  # approve or reject (within a limit for reviewers)
    SECOND_APPROVAL = "second_approval"
    MANAGE_USERS = "manage_users"


_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.REVIEWER: frozenset({Permission.VIEW, Permission.CLAIM, Permission.REVEAL, Permission.DECIDE}),
    Role.SENIOR: frozenset({Permission.VIEW, Permission.CLAIM, Permission.REVEAL, Permission.DECIDE,
                            Permission.SECOND_APPROVAL}),
    Role.ADMIN: frozenset({Permission.VIEW, Permission.MANAGE_USERS}),
}


class Forbidden(InputError):
    """The logged-in user's role (or limit) does not allow what was asked; the message says what would."""


def parse_role(text: str) -> Role:
    """The role named ``text``; InputError naming the four roles otherwise."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise InputError(f"role {text!r} is not one of: {', '.join(r.value for r in Role)}") from None


MAX_AMOUNT = Decimal("999999999.99")  # dollars: the largest amount a person may type (a limit, a filter)
MIN_LIMIT = Decimal("0.01")  # a reviewer's own limit is positive: a reviewer who may decide nothing is a viewer
_CENT = Decimal("0.01")


def _refused(what: str, typed: str, least: Decimal) -> InputError:
    """The one message for an amount out of shape or range; what was typed is cut to 40 characters."""
    shown = typed if len(typed) <= 40 else typed[:40] + "..."
    return InputError(f"{what}: {shown!r} is not an amount from {least:,.2f} to {MAX_AMOUNT:,.2f} dollars "
                      "with at most two decimals (e.g. 1500.00)")


def check_amount(value: Decimal, what: str, *, least: Decimal = Decimal("0"), typed: str | None = None) -> Decimal:
    """``value`` (Decimal dollars) when it is finite, from ``least`` to :data:`MAX_AMOUNT` (999,999,999.99)
    and has at most two decimals; InputError naming ``what`` (and ``typed``, what the person wrote) and the
    range otherwise. The range is checked before the cents: no value of any size raises InvalidOperation."""
    in_range = value.is_finite() and least <= value <= MAX_AMOUNT
    if not in_range or value != value.quantize(_CENT):  # quantize only in range (28 digits of precision)
        raise _refused(what, str(value) if typed is None else typed, least)
    return value


def parse_amount(text: str, what: str, *, least: Decimal = Decimal("0")) -> Decimal:
    """Dollars (Decimal) from text such as ``"1500"`` or ``"1500.50"``: from ``least`` to :data:`MAX_AMOUNT`,
    at most two decimals; InputError naming ``what`` and the accepted range otherwise (never a traceback)."""
    typed = str(text).strip()
    try:
        value = Decimal(typed)
    except InvalidOperation:
        raise _refused(what, typed, least) from None
    return check_amount(value, what, least=least, typed=typed)


def parse_limit(text: str, what: str) -> Decimal:
    """A reviewer's own limit (``vipflow users add|reset --limit``, the /users form): Decimal dollars from
    0.01 to 999,999,999.99 with at most two decimals; InputError naming ``what`` and that range otherwise.
    The one parser both the command and the page use."""
    return parse_amount(text, what, least=MIN_LIMIT)


def check_limit(role: Role, limit: Decimal | None, what: str = "limit") -> Decimal | None:
    """``limit`` (Decimal dollars, or None) when it may go with ``role``: only a reviewer's decisions are
    bounded by a limit (a senior decides any amount, a viewer or an admin none), and it lies in the range
    of :func:`parse_limit`. InputError naming ``what`` otherwise."""
    if limit is None:
        return None
    if role != Role.REVIEWER:
        does = "decides any amount" if role == Role.SENIOR else "decides nothing"
        raise InputError(f"{what} applies to reviewers only ({a(role.value)} {does}); leave it out, "
                         f"or make the user a reviewer")
    return check_amount(limit, what, least=MIN_LIMIT)


def can(role: Role, permission: Permission) -> bool:
    """True when ``role`` holds ``permission``."""
    return permission in _GRANTS[role]


def require(role: Role, permission: Permission, doing: str) -> None:
    """Forbidden (saying which roles may) unless ``role`` holds ``permission``; ``doing`` names the act."""
    if not can(role, permission):
        allowed = ", ".join(r.value for r in Role if can(r, permission))
        raise Forbidden(f"{a(role.value)} may not {doing}; that needs the role {allowed}")


@dataclass(frozen=True)
class Reviewer:
    """Who acts: the recorded actor (``user:<name>``), their role and own limit (None: the configured one)."""

    actor: str
    role: Role
    limit: Decimal | None = None


def decision_limit(who: Reviewer, reviewer_limit: Decimal) -> Decimal | None:
    """The largest amount (dollars) ``who`` may decide alone; None: no limit (a senior)."""
    if who.role == Role.SENIOR:
        return None
    return who.limit if who.limit is not None else reviewer_limit


def check_decide(who: Reviewer, amount: Decimal | None, reviewer_limit: Decimal, verdict: str) -> None:
    """Forbidden unless ``who`` may ``verdict`` (approve|reject) a transaction of ``amount`` dollars: a
    decider, and within their limit. An unknown amount is above every limit (only a senior decides it)."""
    require(who.role, Permission.DECIDE, f"{verdict} transactions")
    limit = decision_limit(who, reviewer_limit)
    if limit is not None and (amount is None or amount > limit):
        shown = "an unknown amount" if amount is None else f"{amount:.2f}"
        raise Forbidden(f"{shown} is above your limit of {limit:.2f}; a senior reviewer must {verdict} it")


def needs_four_eyes(amount: Decimal | None, four_eyes_amount: Decimal) -> bool:
    """True when approving ``amount`` dollars needs two approvals (above ``review.four_eyes_amount``;
    an unknown amount does too)."""
    return amount is None or amount > four_eyes_amount


def check_second_approval(who: Reviewer, first_actor: str) -> None:
    """Forbidden unless ``who`` may give the second approval after ``first_actor``: a senior, not the first."""
    require(who.role, Permission.SECOND_APPROVAL, "give the second approval of a four-eyes transaction")
    if who.actor == first_actor:
        raise Forbidden("you gave the first approval; a second, different senior reviewer must give the second")
