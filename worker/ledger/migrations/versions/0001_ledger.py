"""The ledger: notifications, transactions, events, rule texts, dead letters.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("entry_id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("route", sa.String(200), nullable=True),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("transaction_id", sa.String(64), nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("stored_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_transaction_id", "notifications", ["transaction_id"])
    op.create_index("ix_notifications_received_at_ms", "notifications", ["received_at_ms"])
    op.create_table(
        "transactions",
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("transaction_type", sa.String(16), nullable=True),
        sa.Column("amount", sa.Numeric(18, 2), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("ruleset_hash", sa.String(64), nullable=True),
        sa.Column("review_reason", sa.Text, nullable=True),
        sa.Column("review_since", sa.Double, nullable=True),
        sa.Column("held_by", sa.String(200), nullable=True),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_transactions"),
    )
    op.create_index("ix_transactions_state", "transactions", ["state", "review_since"])
    op.create_index("ix_transactions_created_at", "transactions", ["created_at"])
    op.create_table(
        "events",
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("data", Json, nullable=True),
        sa.PrimaryKeyConstraint("transaction_id", "seq", name="pk_events"),
        sa.ForeignKeyConstraint(["transaction_id"], ["transactions.transaction_id"],
                                name="fk_events_transaction_id"),
    )
    op.create_table(
        "notification_done",
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_notification_done"),
        sa.ForeignKeyConstraint(["entry_id"], ["notifications.entry_id"], name="fk_notification_done_entry_id"),
    )
    op.create_table(
        "rulesets",
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("first_used_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("content_hash", name="pk_rulesets"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("requeued_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_entry_id", "dead_letters", ["entry_id"])


def downgrade() -> None:
    for table in ("dead_letters", "rulesets", "notification_done", "events", "transactions", "notifications"):
        op.drop_table(table)
