"""The review workspace's users and its audit of acts outside transactions (issue 13).

``users``: local accounts (argon2id hashes), roles, decision limits, disabling, a session epoch.
``workspace_events``: users added, disabled, reset, logins and refused logins (append-only: the same
triggers as the events). An index on ``events (kind, at)`` for the audit page's human events.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("review_limit", sa.Numeric(18, 2), nullable=True),
        sa.Column("session_epoch", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("disabled_at", sa.Double, nullable=True),
        sa.Column("disabled_by", sa.String(200), nullable=True),
        sa.Column("password_changed_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("username", name="pk_users"),
    )
    op.create_table(
        "workspace_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("data", Json, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workspace_events"),
    )
    op.create_index("ix_workspace_events_at", "workspace_events", ["at"])
    op.create_index("ix_events_kind_at", "events", ["kind", "at"])
    if op.get_bind().dialect.name == "postgresql":
        # The function exists since 0002: UPDATE refused, DELETE only by `vipflow db prune`.
        op.execute("CREATE TRIGGER workspace_events_append_only BEFORE UPDATE OR DELETE ON workspace_events "
                   "FOR EACH ROW EXECUTE FUNCTION vipflow_append_only()")
    else:
        op.execute("CREATE TRIGGER workspace_events_no_update BEFORE UPDATE ON workspace_events "
                   "BEGIN SELECT RAISE(ABORT, 'vipflow ledger: UPDATE on workspace_events refused: "
                   "the ledger is append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS workspace_events_append_only ON workspace_events")
    else:
        op.execute("DROP TRIGGER IF EXISTS workspace_events_no_update")
    op.drop_index("ix_events_kind_at", table_name="events")
    op.drop_index("ix_workspace_events_at", table_name="workspace_events")
    op.drop_table("workspace_events")
    op.drop_table("users")
