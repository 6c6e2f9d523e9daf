"""Airflow's metadata DB: migrated once to the installed Airflow's head revision (read from the
migration files, no import), and the pools the DAGs use."""

from __future__ import annotations

import logging
import re
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from driftloop_dev.stack.constants import BIN_DIR, StackError
from driftloop_dev.stack.processes import _child_env, _tail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    ran: bool
    seconds: float
    revision: str


def _airflow_heads() -> set[str]:
    """Head revision(s) of the installed Airflow's migrations, read from the files (no import)."""
    spec = find_spec("airflow")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("apache-airflow is not installed")
    versions = Path(next(iter(spec.submodule_search_locations))) / "migrations" / "versions"
    revisions, parents = set(), set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        if match := re.search(r'^revision\s*=\s*"(\w+)"', text, re.M):
            revisions.add(match.group(1))
        if match := re.search(r"^down_revision\s*=\s*(.+)$", text, re.M):
            parents.update(re.findall(r'"(\w+)"', match.group(1)))
    return revisions - parents


def _sqlite_column(sqlite_path: Path, query: str) -> set[str] | None:
    """The first column of ``query`` on a SQLite file opened read-only; None when the file,
    or the table, is not there (yet)."""
    if not sqlite_path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return {row[0] for row in conn.execute(query)}
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _libpq_url(url: str) -> str:
    """``postgresql+psycopg2://…`` (SQLAlchemy) → ``postgresql://…`` (libpq)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def _pg_column(url: str, query: str) -> set[Any] | None:
    """The first column of ``query`` on PostgreSQL; None when unreachable or the table is not
    there (yet)."""
    if not url:
        return None
    import psycopg2

    try:
        conn = psycopg2.connect(_libpq_url(url), connect_timeout=3)
    except psycopg2.Error:
        return None
    try:
        with conn.cursor() as cursor:
            cursor.execute(query)
            return {row[0] for row in cursor.fetchall()}
    except psycopg2.Error:
        return None
    finally:
        conn.close()


def _db_column(conn_url: str, query: str) -> set[Any] | None:
    if conn_url.startswith("sqlite:///"):
        return _sqlite_column(Path(conn_url.removeprefix("sqlite:///")), query)
    if conn_url.startswith("postgresql"):
        return _pg_column(conn_url, query)
    return None


def migrate_airflow_db(env: Mapping[str, str], *, timeout: float = 600.0) -> Migration:
    """Run ``airflow db migrate`` in ``env`` unless its metadata DB (SQLite or PostgreSQL) is
    already at the head revision; then create the missing :data:`POOLS`."""
    conn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    heads = _airflow_heads()
    if (_db_column(conn, "SELECT version_num FROM alembic_version") or set()) == heads:
        log.info("Airflow DB already at %s", ",".join(sorted(heads)))
        ensure_pools(env)
        return Migration(False, 0.0, ",".join(sorted(heads)))
    logs = Path(env["AIRFLOW_HOME"]).parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "airflow-db-migrate.log"
    began = time.monotonic()
    with open(log_path, "ab") as out:
        done = subprocess.run(
            [str(BIN_DIR / "airflow"), "db", "migrate"],
            env=_child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise StackError(
            f"airflow db migrate failed (exit {done.returncode}); last lines of {log_path}:\n"
            + _tail(log_path)
        )
    log.info("airflow db migrate took %.1f s", seconds)
    ensure_pools(env)
    return Migration(True, seconds, ",".join(sorted(heads)))


#: Airflow pools the DAGs use: name → (slots, description). A task in a pool that does not
#: exist is never scheduled, so the stack creates them (compose: airflow-init.sh).
POOLS = {"gpu": (1, "GPU trainings of retrain_detector: one at a time on this machine")}


def ensure_pools(env: Mapping[str, str], sqlite_path: Path | None = None) -> list[str]:
    """Create the missing :data:`POOLS` (``airflow pools set``); returns those created. The
    pools present are read from the metadata DB of ``env`` (or ``sqlite_path``) directly."""
    query = "SELECT pool FROM slot_pool"
    if sqlite_path is not None:
        present = _sqlite_column(sqlite_path, query)
    else:
        present = _db_column(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], query)
    created = []
    for name, (slots, description) in POOLS.items():
        if present is not None and name in present:
            continue
        done = subprocess.run(
            [str(BIN_DIR / "airflow"), "pools", "set", name, str(slots), description],
            env=_child_env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"airflow pools set {name} failed: {done.stderr[-2000:]}")
        created.append(name)
    return created
