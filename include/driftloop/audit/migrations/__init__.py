"""Alembic migrations of driftloop's own tables (drift history and audit ledger); run them with
:func:`driftloop.audit.schema.upgrade`, never with ``create_all``."""
