"""Alembic environment: always "online", on the connection :func:`driftloop.audit.schema.upgrade`
passes in ``config.attributes["connection"]`` (inside its own locked transaction)."""

from alembic import context

from driftloop.audit.schema import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "driftloop migrations run through driftloop.audit.schema.upgrade(engine) "
        "(`driftloop ledger migrate`), which passes the connection"
    )
context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
