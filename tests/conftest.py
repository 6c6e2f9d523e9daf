"""Test session setup.

Airflow reads its configuration once, when it is first imported, so the Airflow environment
(AIRFLOW_HOME, DAGs folder, SQLite metadata DB) is fixed here, at collection time, to the
same paths the embedded stack of this session will use. Connections and variables come
later from the running stack as ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*`` environment variables,
which Airflow reads at lookup time.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SESSION_ROOT = Path(tempfile.mkdtemp(prefix="driftloop-tests-"))
STACK_ROOT = SESSION_ROOT / "stack"

os.environ.update(
    {
        "AIRFLOW_HOME": str(STACK_ROOT / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{STACK_ROOT / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "False",
        "YOLO_OFFLINE": "1",
        # sensors of dag.test() runs: short (the data of those tests is always there)
        "DRIFTLOOP_SENSOR_TIMEOUT_S": "20",
        "DRIFTLOOP_SENSOR_POKE_S": "5",
    }
)
(STACK_ROOT / "airflow").mkdir(parents=True, exist_ok=True)


def _interrupt(signum, frame):
    # A terminated test run (CI time limit, Ctrl-C from a supervisor) still runs the fixture
    # teardowns, which stop the stack's servers by their PIDs.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _interrupt)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def stack():
    """The embedded stack (moto S3, mlflow server, pushgateway) and a migrated Airflow DB,
    with its environment applied to this process for the session."""
    from driftloop_dev.stack import EmbeddedStack, migrate_airflow_db

    if os.environ.get("DRIFTLOOP_TESTS_NO_SERVICES"):
        pytest.fail("this test needs the embedded stack; `make unit` runs without services")

    saved = dict(os.environ)
    with EmbeddedStack(STACK_ROOT, REPO) as running:
        os.environ.update(running.env)
        migrate_airflow_db(running.env)
        try:
            yield running
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(scope="session")
def s3(stack):
    import boto3

    return boto3.client("s3")


def load_dag(dag_id: str):
    """The DAG as the dag-processor would parse it from the repository's DAGs folder."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def postgres_init_env(**overrides: str) -> dict[str, str]:
    """The environment include/compose/postgres-init.sh gets in the postgres container: the
    superuser, one password per role (long, not placeholders), the SQL and the secrets check
    from the checkout."""
    compose = REPO / "include" / "compose"
    return {
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "postgres",
        "POSTGRES_PASSWORD": "pw-superuser-0123456789",
        "AIRFLOW_DB_PASSWORD": "pw-airflow-0123456789",
        "DRIFTLOOP_DB_PASSWORD": "pw-d'rift-0123456789",
        "DRIFTLOOP_APP_DB_PASSWORD": "pw-app-0123456789",
        "MLFLOW_DB_PASSWORD": "pw-ml flow-0123456789",
        "DRIFTLOOP_INIT_SQL": str(compose / "init-databases.sql"),
        "DRIFTLOOP_CHECK_SECRETS": str(compose / "check-secrets.sh"),
        **overrides,
    }
