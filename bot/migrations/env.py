"""Alembic's entry point: runs the revisions on the connection `Store.migrate()` hands over.

The connection already holds the transaction and the migration lock, so this only configures and runs.
"""

from alembic import context
from sqlalchemy import Connection

from bot.adapters.tables import Base

connection: Connection = context.config.attributes["connection"]
# Batch mode lets one revision alter tables on SQLite (by copy-and-rename) as well as on PostgreSQL.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
