"""The embedded stack's fixed shape: host, credentials, buckets, file names, the components and
the order they start and stop in, and their startup timeouts."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from driftloop.config.settings import Settings

HOST = "127.0.0.1"
AWS_ACCESS_KEY_ID = "testing"
AWS_SECRET_ACCESS_KEY = "testing"
AWS_REGION = "us-east-1"
DATA_BUCKET = Settings().bucket
MLFLOW_BUCKET = "driftloop-mlflow"
MLFLOW_ARTIFACTS = f"s3://{MLFLOW_BUCKET}/artifacts"
ADMIN_USER = "admin"
STATE_FILE = "stack.json"
PASSWORDS_FILE = "airflow/simple_auth_manager_passwords.json"
FERNET_KEY_FILE = "airflow/fernet.key"
PG_CREDENTIALS_FILE = "postgres/credentials.json"
SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
PUSHGATEWAY_CANDIDATES = ("prometheus-pushgateway", "/usr/bin/prometheus-pushgateway")
REDIS_CANDIDATES = ("redis-server", "/usr/bin/redis-server")
PG_BINDIR_GLOB = "/usr/lib/postgresql/*/bin"

#: the Airflow executors of the embedded stack: ``executor=`` → ``[core] executor``
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
PARALLELISM = 4
CELERY_CONCURRENCY = 2
CORE = ("s3", "mlflow", "pushgateway")
AIRFLOW_JOBS = {  # component → its part of /api/v2/monitor/health
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag_processor",
    "airflow-triggerer": "triggerer",
}
CELERY_WORKERS = ("airflow-worker1", "airflow-worker2")
AIRFLOW_PROCESSES = ("airflow", *AIRFLOW_JOBS, *CELERY_WORKERS)
AIRFLOW_COMPONENTS = ("postgres", "redis", *AIRFLOW_PROCESSES)
START_ORDER = (*CORE, *AIRFLOW_COMPONENTS)
#: stopped tier by tier, each tier at once: what runs and schedules tasks first, then the
#: api-server (running tasks report to it until they end), then the databases, then the rest
STOP_TIERS = (
    (*CELERY_WORKERS, *AIRFLOW_JOBS),
    ("airflow",),
    ("redis", "postgres"),
    CORE,
)
STOP_SIGNAL = {"postgres": signal.SIGINT}  # PostgreSQL's "fast" shutdown; SIGTERM waits for clients
STOP_GRACE_S = {name: 30.0 for name in (*AIRFLOW_PROCESSES, "postgres")}  # default 10
STARTUP_TIMEOUT_S = {"s3": 60.0, "mlflow": 120.0, "pushgateway": 30.0, "postgres": 60.0}
AIRFLOW_STARTUP_TIMEOUT_S = 300.0
BIN_DIR = Path(sys.executable).parent
DEFAULT_REPO = Path(__file__).resolve().parents[3]


class StackError(RuntimeError):
    """A component did not start, or the stack's state is unusable."""
