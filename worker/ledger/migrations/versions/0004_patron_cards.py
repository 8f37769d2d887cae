"""The VIP card numbers' patrons, learned from notifications that carry both (issue 12).

A documented withdrawal notification carries the VIP card number but no PatronId: the worker finds
the patron through the card, learned from deposits and from any notification with both.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patron_cards",
        sa.Column("vip_card_number", sa.String(64), nullable=False),
        sa.Column("patron_id", sa.String(200), nullable=False),
        sa.Column("entry_id", sa.String(40), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
        sa.Column("learned_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("vip_card_number", name="pk_patron_cards"),
    )


def downgrade() -> None:
    op.drop_table("patron_cards")
