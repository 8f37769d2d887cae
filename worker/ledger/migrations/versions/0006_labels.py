"""Outcome labels (issue 10): what happened to a transaction after its decision, and who said so.

``label_imports``: one row per batch recorded (a CSV file, one API request), with its actor.
``labels``: one row per label, in its import. Both append-only (the triggers of 0002: UPDATE refused;
on PostgreSQL DELETE only by ``vipflow db prune``, which takes a transaction's labels with it).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_APPEND_ONLY = ("label_imports", "labels")


def upgrade() -> None:
    op.create_table(
        "label_imports",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("recorded", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_label_imports"),
    )
    op.create_table(
        "labels",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("import_id", BigId, nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("occurred_on", sa.Date, nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_labels"),
        sa.ForeignKeyConstraint(["import_id"], ["label_imports.id"], name="fk_labels_import_id"),
        sa.ForeignKeyConstraint(["transaction_id"], ["transactions.transaction_id"],
                                name="fk_labels_transaction_id"),
    )
    op.create_index("ix_labels_transaction_id", "labels", ["transaction_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        for table in _APPEND_ONLY:  # the function exists since 0002
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION vipflow_append_only()")
    else:
        for table in _APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, 'vipflow ledger: UPDATE on {table} refused: "
                       "the ledger is append-only'); END")


def downgrade() -> None:
    for table in _APPEND_ONLY:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
    op.drop_index("ix_labels_transaction_id", table_name="labels")
    op.drop_table("labels")
    op.drop_table("label_imports")
