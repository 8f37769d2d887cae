"""Append-only enforced by the database, and the audit of prunes.

On PostgreSQL a trigger refuses every UPDATE of ``events`` and ``notifications``,
and every DELETE unless the deleting transaction set ``vipflow.prune = 'on'``
(only ``vipflow db prune`` does, and it records each run in ``prune_runs``).
SQLite gets the same triggers for UPDATE (its DELETE path is the code's alone).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_APPEND_ONLY = ("events", "notifications", "notification_done")

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION vipflow_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('vipflow.prune', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'vipflow ledger: % on % refused: the ledger is append-only (vipflow db prune is the only delete)',
    TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "prune_runs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double, nullable=True),
        sa.Column("cutoff_at", sa.Double, nullable=False),
        sa.Column("retention_days", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("transactions", sa.Integer, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("notifications", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prune_runs"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table in _APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION vipflow_append_only()")
    else:
        for table in _APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, 'vipflow ledger: UPDATE on {table} refused: "
                       "the ledger is append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS vipflow_append_only()")
    else:
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
    op.drop_table("prune_runs")
