"""The audit ledger on a real PostgreSQL (the Debian binaries the embedded stack uses): the
migrations create the tables and the append-only trigger, the application role may INSERT
and SELECT the ledger only, and UPDATE/DELETE are refused by the grants and by the trigger."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import postgres_init_env

pytestmark = pytest.mark.integration

KEY = b"0123456789abcdef0123456789abcdef-test-key"


@contextmanager
def _cluster():
    """A throw-away cluster (trust auth on 127.0.0.1, superuser ``owner``) on a free port;
    yields its port."""
    from driftloop_dev.stack.net import free_port
    from driftloop_dev.stack.postgres import _RunAs
    from driftloop_dev.stack.prerequisites import postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin)")
    run_as = _RunAs.for_postgres()
    root = Path(tempfile.mkdtemp(prefix="driftloop-pg-"))
    root.chmod(0o755)
    data = root / "data"
    kwargs = run_as.popen_kwargs() if run_as else {}
    if run_as:
        run_as.chown(root)
        run_as.check_reachable(root)
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "owner", "--auth=trust", "--locale=C"],
        check=True, capture_output=True, timeout=300, env={**os.environ, "LC_ALL": "C"}, **kwargs,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs,
    )  # fmt: skip
    try:
        engine = sa.create_engine(_url("owner", port, "postgres"))
        for _ in range(100):
            try:
                with engine.connect():
                    break
            except sa.exc.OperationalError:
                time.sleep(0.2)
        else:
            pytest.fail("PostgreSQL did not accept connections in 20 s")
        engine.dispose()
        yield port
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: pooled connections may be open
        server.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _url(user: str, port: int, database: str) -> str:
    return f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{database}"


@pytest.fixture(scope="module")
def postgres():
    """A cluster with the application role; yields the owner's and the app role's URLs."""
    with _cluster() as port:
        engine = sa.create_engine(_url("owner", port, "postgres"))
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE ROLE driftloop_app LOGIN"))
        engine.dispose()
        yield _url("owner", port, "postgres"), _url("driftloop_app", port, "postgres")


def test_the_app_role_may_only_insert_and_select_and_the_trigger_refuses_everyone(postgres):
    from driftloop.audit import schema
    from driftloop.audit.ledger import Ledger

    owner_url, app_url = postgres
    owner = schema.create_engine(owner_url)
    assert schema.upgrade(owner) == schema.head_revision()
    statements = schema.grant_app_role(owner, "driftloop_app")
    assert 'GRANT SELECT, INSERT ON audit_ledger TO "driftloop_app"' in statements

    app = Ledger(app_url, hmac_key=KEY)  # at head already: no DDL by the app role
    for i in range(3):
        app.append("evaluation", actor="a", subject="s", payload={"i": i}, idempotency_key=f"{i}")
    assert app.verify().ok
    assert app.verify().macs_checked == 3

    for statement in ("UPDATE audit_ledger SET actor = 'x'", "DELETE FROM audit_ledger"):
        denied = pytest.raises(sa.exc.ProgrammingError, match="permission denied for table")
        with denied, app.engine.begin() as conn:
            conn.execute(sa.text(statement))
    for statement in (
        "UPDATE audit_ledger SET actor = 'x'",
        "DELETE FROM audit_ledger WHERE id = 3",
        "TRUNCATE audit_ledger",
    ):
        refused = pytest.raises(sa.exc.ProgrammingError, match="audit_ledger is append-only")
        with refused, owner.begin() as conn:  # the owner passes the grants; the trigger stops it
            conn.execute(sa.text(statement))
    assert app.count() == 3
    # the drift history stays writable for the app role
    from driftloop.drift import history

    event = history.open_event(app.engine, "run-1", "warn", [])
    history.set_event_status(app.engine, event, "IGNORED", actor="bob")

    with pytest.raises(ValueError, match="owns audit_ledger"):
        schema.grant_app_role(owner, "owner")


def test_compose_init_script_on_a_real_server_gives_each_service_only_its_own(tmp_path):
    """include/compose/postgres-init.sh and init-databases.sql as the postgres container runs
    them (psql as the superuser, passwords as psql variables); then the migrations as the
    driftloop owner (airflow-init) and the tasks as driftloop_app."""
    from driftloop.audit import schema
    from driftloop.audit.ledger import Ledger

    compose = Path(__file__).resolve().parents[2] / "include" / "compose"
    with _cluster() as port:
        env = {
            **os.environ,
            **postgres_init_env(POSTGRES_USER="owner"),
            "PGHOST": "127.0.0.1",
            "PGPORT": str(port),
        }
        done = subprocess.run(
            ["sh", str(compose / "postgres-init.sh")], env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

        owner = schema.create_engine(_url("driftloop", port, "driftloop"))
        assert schema.upgrade(owner) == schema.head_revision()  # airflow-init, as the owner
        schema.grant_app_role(owner, "driftloop_app")
        app = Ledger(_url("driftloop_app", port, "driftloop"), hmac_key=KEY)
        app.append("evaluation", actor="a", subject="s", payload={}, idempotency_key="1")
        assert app.verify().ok
        with app.engine.begin() as conn:  # rows, never schema
            for statement in (
                "UPDATE audit_ledger SET actor = 'x'",
                "CREATE TABLE mine (x int)",
                "DROP TABLE drift_events",
            ):
                with pytest.raises(sa.exc.ProgrammingError), conn.begin_nested():
                    conn.execute(sa.text(statement))
        # each service reaches its own database only
        for user, database in (
            ("driftloop_app", "mlflow"),
            ("driftloop_app", "airflow"),
            ("airflow", "driftloop"),
            ("mlflow", "driftloop"),
            ("driftloop", "airflow"),
        ):
            engine = sa.create_engine(_url(user, port, database))
            with pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
                engine.connect().close()
            engine.dispose()
        for user in ("airflow", "driftloop", "driftloop_app", "mlflow"):
            engine = sa.create_engine(_url(user, port, "postgres"))
            with engine.connect() as conn:
                superuser = conn.execute(
                    sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                ).scalar()
            engine.dispose()
            assert superuser is False, user
        for role, database in (("airflow", "airflow"), ("mlflow", "mlflow")):
            engine = sa.create_engine(_url(role, port, database))
            with engine.begin() as conn:  # the owner of its database creates its schema
                conn.execute(sa.text("CREATE TABLE IF NOT EXISTS probe (x int)"))
            engine.dispose()
        owner.dispose()
        app.engine.dispose()
