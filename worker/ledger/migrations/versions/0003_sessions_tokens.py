"""Patron sessions opened through vipflow, and the operator site's API tokens (issue 14).

``patron_sessions``: one row per transaction id vipflow issued for a session (opening, open, or
refused with VIP's answer). ``api_tokens``: bearer tokens by name, stored as a sha256 only, with
scopes and revocation. ``api_token_uses``: every request made with a token (append-only: the
same triggers as the events).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Money = sa.Numeric(18, 2)


def upgrade() -> None:
    op.create_table(
        "patron_sessions",
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("patron_kind", sa.String(16), nullable=False),
        sa.Column("patron_id", sa.String(200), nullable=False),
        sa.Column("vip_card_number", sa.String(64), nullable=True),
        sa.Column("transaction_type", sa.String(16), nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("wallet_balance", Money, nullable=True),
        sa.Column("remaining_daily_deposit", Money, nullable=True),
        sa.Column("product_type", sa.String(16), nullable=True),
        sa.Column("return_url", sa.Text, nullable=True),
        sa.Column("vip_session_id", sa.String(200), nullable=True),
        sa.Column("vip_status", sa.Integer, nullable=True),
        sa.Column("vip_error", Json, nullable=True),
        sa.Column("token_name", sa.String(100), nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("opened_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_patron_sessions"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_api_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_api_tokens_token_sha256"),
    )
    op.create_table(
        "api_token_uses",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("token_name", sa.String(100), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_token_uses"),
    )
    op.create_index("ix_api_token_uses_token_name", "api_token_uses", ["token_name", "at"])
    if op.get_bind().dialect.name == "postgresql":
        # The function exists since 0002: UPDATE refused, DELETE only by `vipflow db prune`.
        op.execute("CREATE TRIGGER api_token_uses_append_only BEFORE UPDATE OR DELETE ON api_token_uses "
                   "FOR EACH ROW EXECUTE FUNCTION vipflow_append_only()")
    else:
        op.execute("CREATE TRIGGER api_token_uses_no_update BEFORE UPDATE ON api_token_uses "
                   "BEGIN SELECT RAISE(ABORT, 'vipflow ledger: UPDATE on api_token_uses refused: "
                   "the ledger is append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS api_token_uses_append_only ON api_token_uses")
    else:
        op.execute("DROP TRIGGER IF EXISTS api_token_uses_no_update")
    op.drop_index("ix_api_token_uses_token_name", table_name="api_token_uses")
    op.drop_table("api_token_uses")
    op.drop_table("api_tokens")
    op.drop_table("patron_sessions")
