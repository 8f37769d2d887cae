"""What ``vipflow db prune`` deletes beyond transactions: its counts in ``prune_runs``.

Prune now also deletes old patron sessions (of pruned or never-used transaction ids), API token uses and
workspace events; each run records how many of each went in three new integer columns of ``prune_runs``
(NOT NULL, 0 for the runs recorded before). No trigger changes: ``api_token_uses`` and
``workspace_events`` already let a DELETE through on PostgreSQL only when ``vipflow.prune = 'on'`` (0003,
0008), and ``patron_sessions`` has no trigger (its rows are updated when VIP answers).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COUNTS = ("patron_sessions", "api_token_uses", "workspace_events")


def upgrade() -> None:
    for name in _COUNTS:
        op.add_column("prune_runs", sa.Column(name, sa.Integer, nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    # A batch: SQLite before 3.35 has no DROP COLUMN (Alembic copies the table instead).
    with op.batch_alter_table("prune_runs") as batch:
        for name in reversed(_COUNTS):
            batch.drop_column(name)
