"""Alembic's environment for the ledger: run by ``vipflow db upgrade`` (worker.ledger.schema)."""

from __future__ import annotations

from alembic import context

from worker.ledger.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - vipflow always passes its own connection
    raise RuntimeError("run the ledger's migrations with `vipflow db upgrade`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
