"""Alembic environment: iterate runs the migrations itself, on the ledger's own connection, inside the ledger's
write transaction (``Ledger._migrate``); ``alembic`` on the command line is not needed."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
