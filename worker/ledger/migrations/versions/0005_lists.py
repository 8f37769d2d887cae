"""Named lists for the rules (issue 10): card numbers, patron ids, routing numbers, bank names, IP ranges.

``lists`` (one row per list: kind, current version, size), ``list_entries`` (what each holds now),
and the append-only history: ``list_changes`` (one row per version: who, when, what action, how
many added and removed) and ``list_change_entries`` (each value a version added or removed).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_APPEND_ONLY = ("list_changes", "list_change_entries")


def upgrade() -> None:
    op.create_table(
        "lists",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_lists"),
    )
    op.create_table(
        "list_entries",
        sa.Column("list_name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("added_version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("list_name", "value", name="pk_list_entries"),
        sa.ForeignKeyConstraint(["list_name"], ["lists.name"], name="fk_list_entries_list_name"),
    )
    op.create_table(
        "list_changes",
        sa.Column("list_name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("removed", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("list_name", "version", name="pk_list_changes"),
        sa.ForeignKeyConstraint(["list_name"], ["lists.name"], name="fk_list_changes_list_name"),
    )
    op.create_table(
        "list_change_entries",
        sa.Column("list_name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("list_name", "version", "value", name="pk_list_change_entries"),
        sa.ForeignKeyConstraint(["list_name", "version"], ["list_changes.list_name", "list_changes.version"],
                                name="fk_list_change_entries_list_name"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # The function exists since 0002: UPDATE refused, DELETE only by `vipflow db prune`.
        for table in _APPEND_ONLY:
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
    op.drop_table("list_change_entries")
    op.drop_table("list_changes")
    op.drop_table("list_entries")
    op.drop_table("lists")
