"""The history of ruleset versions that went live, with who and when (issue 10: history and rollback).

One chain per (ruleset, role): each row names the row it follows, unique, so concurrent recorders cannot
fork it. Append-only: on PostgreSQL the ledger's ``vipflow_append_only`` trigger function (0002) refuses
UPDATE and DELETE; on SQLite a trigger refuses UPDATE.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ruleset_history",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("follows", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("how", sa.String(16), nullable=False),
        sa.Column("share", sa.Numeric(5, 2), nullable=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("tests_text", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ruleset_history"),
    )
    op.create_index("uq_ruleset_history_chain", "ruleset_history", ["name", "role", "follows"], unique=True)
    op.create_index("ix_ruleset_history_hash", "ruleset_history", ["content_hash"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE TRIGGER ruleset_history_append_only BEFORE UPDATE OR DELETE ON ruleset_history "
                   "FOR EACH ROW EXECUTE FUNCTION vipflow_append_only()")
    else:
        op.execute("CREATE TRIGGER ruleset_history_no_update BEFORE UPDATE ON ruleset_history "
                   "BEGIN SELECT RAISE(ABORT, 'vipflow ledger: UPDATE on ruleset_history refused: "
                   "the ledger is append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ruleset_history_append_only ON ruleset_history")
    else:
        op.execute("DROP TRIGGER IF EXISTS ruleset_history_no_update")
    op.drop_index("ix_ruleset_history_hash", "ruleset_history")
    op.drop_index("uq_ruleset_history_chain", "ruleset_history")
    op.drop_table("ruleset_history")
