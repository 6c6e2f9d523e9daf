"""What the stack needs from the machine: the Pushgateway, Redis and PostgreSQL binaries, the
PostgreSQL and Celery Python packages; each ``*_missing`` says why a shape cannot run."""

from __future__ import annotations

import os
import re
import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

from driftloop_dev.stack.constants import PG_BINDIR_GLOB, PUSHGATEWAY_CANDIDATES, REDIS_CANDIDATES


def _first_binary(candidates: tuple[str, ...]) -> str | None:
    return next((found for c in candidates if (found := shutil.which(c))), None)


def pushgateway_binary() -> str | None:
    return _first_binary(PUSHGATEWAY_CANDIDATES)


def redis_binary() -> str | None:
    """``redis-server`` (Debian package ``redis-server``), or None."""
    return _first_binary(REDIS_CANDIDATES)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def postgres_bindir() -> Path | None:
    """The PostgreSQL server binaries (``initdb``, ``postgres``): ``DRIFTLOOP_PG_BINDIR``, the
    newest ``/usr/lib/postgresql/*/bin`` (Debian), or the folder of ``postgres`` on PATH."""
    override = os.environ.get("DRIFTLOOP_PG_BINDIR")
    candidates = [Path(override)] if override else []
    candidates += sorted(Path("/").glob(PG_BINDIR_GLOB.lstrip("/")), key=_version_key, reverse=True)
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "postgres").is_file() and (folder / "initdb").is_file():
            return folder
    return None


def airflow_postgres_missing() -> str | None:
    """Why Airflow cannot run on the stack's PostgreSQL here; None when it can."""
    if postgres_bindir() is None:
        return (
            "PostgreSQL server binaries not found (initdb, postgres: Debian postgresql-15 "
            f"in {PG_BINDIR_GLOB}; or set DRIFTLOOP_PG_BINDIR)"
        )
    for module, why in (
        ("psycopg2", "the sync driver"),
        # Airflow 3 opens an async engine on its metadata DB at import time
        ("asyncpg", "the async driver Airflow 3 needs for PostgreSQL"),
    ):
        if find_spec(module) is None:
            return f"Python package {module} ({why}) is not installed in {sys.prefix}"
    return None


def airflow_celery_missing() -> str | None:
    """Why the Celery shape cannot run here (beyond :func:`airflow_postgres_missing`); None
    when it can."""
    if redis_binary() is None:
        return "redis-server not found (Debian package redis-server: `make system-deps` as root)"
    try:
        import celery
        from celery.backends import database
    except ImportError as exc:
        return f"celery is not importable: {exc}"
    # what apache-airflow-providers-celery imports from it (celery 5.7 dropped ``retry``)
    absent = [
        n for n in ("DatabaseBackend", "retry", "session_cleanup") if not hasattr(database, n)
    ]
    if absent:
        return (
            f"celery {celery.__version__} lacks celery.backends.database.{', '.join(absent)}, "
            "which the Airflow Celery provider imports: pin celery<5.7"
        )
    return None
