"""The schema of driftloop's database (drift history + audit ledger): Alembic migrations, run
from Python, and the grants of the application role.

:func:`upgrade` brings a database to the newest revision (``migrations/versions``): a new
database gets every table; one created by the old ``metadata.create_all`` (tables, no version
table) is adopted by revision 0001 as it is and gains ``row_mac`` (0002) and the append-only
triggers (0003). The version is kept in :data:`VERSION_TABLE`, not ``alembic_version``, so the
tables may share a database with Airflow's or MLflow's own Alembic history.

Upgrades are serialised (SQLite ``BEGIN IMMEDIATE``, PostgreSQL an advisory lock) and skipped
without any DDL when the database is already at head, so the application role — which may not
create or alter tables in production — can open an up-to-date database.

Operators (PostgreSQL)::

    driftloop ledger migrate --database-url postgresql+psycopg2://OWNER@db/driftloop
    driftloop ledger grant-app-role driftloop_app --database-url postgresql+psycopg2://OWNER@db/driftloop

then run Airflow's tasks with a ``DRIFTLOOP_DATABASE_URL`` of ``driftloop_app``: it may INSERT
and SELECT the ledger, never UPDATE, DELETE or TRUNCATE it (and the triggers refuse those to
every role, the owner included, until the owner drops them).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "driftloop_alembic_version"
# pg_advisory_xact_lock key of migrations (the ledger's appends use another)
PG_MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"driftloop.schema").digest()[:8], "big", signed=True
)
_ROLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
#: tables the application role reads and writes freely (drift history: re-runs update it)
HISTORY_TABLES = ("drift_checks", "drift_events", "performance_days")


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url`` without touching the schema (SQLite: 30 s busy timeout)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    return sa.create_engine(url, **kwargs)


def _config(connection: sa.Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS_DIR}")
    return head


def current_revision(engine_or_conn: sa.Engine | sa.Connection) -> str | None:
    """The database's revision; None when it has no version table (new, or create_all)."""
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.connect() as conn:
            return current_revision(conn)
    if not sa.inspect(engine_or_conn).has_table(VERSION_TABLE):
        return None
    return engine_or_conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(engine: sa.Engine) -> str:
    """Migrate the database to the newest revision (a no-op, without DDL, when it is there);
    returns the revision."""
    head = head_revision()
    if current_revision(engine) == head:
        return head
    from alembic import command

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, before the version
            except sa.exc.OperationalError as err:
                # an engine that opens its own transactions: the first DDL takes the lock
                if "within a transaction" not in str(err.orig):
                    raise
        elif engine.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK_KEY)))
        try:
            if current_revision(conn) != head:  # another process may have migrated meanwhile
                command.upgrade(_config(conn), "head")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return head


def engine_at_head(url: str) -> sa.Engine:
    """An engine for ``url`` whose database has been migrated to the newest revision."""
    engine = create_engine(url)
    upgrade(engine)
    return engine


def grant_app_role(engine: sa.Engine, role: str) -> list[str]:
    """PostgreSQL: let ``role`` (the role the tasks connect as) INSERT and SELECT the ledger
    and nothing else on it; read and write the drift history; read the schema version. Run
    as the owner of the tables, after :func:`upgrade`. Returns the statements run."""
    if engine.dialect.name != "postgresql":
        raise ValueError(
            f"grants need PostgreSQL; {engine.dialect.name} has no roles (the triggers still "
            "refuse UPDATE and DELETE on audit_ledger)"
        )
    if not _ROLE_RE.match(role):
        raise ValueError(f"role must be a plain PostgreSQL identifier, got {role!r}")
    quoted = f'"{role}"'
    history = ", ".join(HISTORY_TABLES)
    statements = [
        f"REVOKE ALL ON audit_ledger FROM {quoted}",
        f"GRANT SELECT, INSERT ON audit_ledger TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {history} TO {quoted}",
        f"GRANT SELECT ON {VERSION_TABLE} TO {quoted}",
    ]
    with engine.begin() as conn:
        owner = conn.execute(
            sa.text("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_ledger'")
        ).scalar()
        if owner is None:
            raise LookupError("no audit_ledger table: run `driftloop ledger migrate` first")
        if owner == role:
            raise ValueError(
                f"{role!r} owns audit_ledger: the owner can drop the triggers; give the tasks "
                "a separate role"
            )
        sequences = conn.execute(
            sa.text(
                "SELECT pg_get_serial_sequence(t, 'id') FROM unnest(CAST(:tables AS text[])) t"
            ),
            {"tables": list(HISTORY_TABLES)},
        ).scalars()
        for sequence in filter(None, sequences):
            statements.append(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {quoted}")
        for statement in statements:
            conn.execute(sa.text(statement))
    return statements
