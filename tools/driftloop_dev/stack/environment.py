"""The environment of the stack's clients and processes: S3, MLflow and Airflow settings,
connections as ``AIRFLOW_CONN_*``, the ``DRIFTLOOP_*`` settings; the admin password and Fernet
key kept under the root."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets

from driftloop_dev.stack.constants import (
    ADMIN_USER,
    AWS_ACCESS_KEY_ID,
    AWS_REGION,
    AWS_SECRET_ACCESS_KEY,
    CELERY_CONCURRENCY,
    DATA_BUCKET,
    EXECUTORS,
    FERNET_KEY_FILE,
    HOST,
    PARALLELISM,
    SIMPLE_AUTH_MANAGER,
)


class EnvironmentMixin:
    """The environment part of :class:`~driftloop_dev.stack.EmbeddedStack`."""

    def _ensure_password(self) -> None:
        path = self.passwords_file
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if ADMIN_USER in json.loads(path.read_text()):
                return
        except (OSError, ValueError):
            pass
        path.write_text(json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}) + "\n")
        path.chmod(0o600)

    def _fernet_key(self, name: str = FERNET_KEY_FILE) -> str:
        """Airflow's Fernet key (or another random 32-byte key, ``name``), kept with the
        database it protects (which outlives a stack)."""
        path = self.root / name
        with contextlib.suppress(OSError):
            key = path.read_text().strip()
            if key:
                return key
        path.parent.mkdir(parents=True, exist_ok=True)
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        path.write_text(key + "\n")
        path.chmod(0o600)
        return key

    def _build_env(self) -> dict[str, str]:
        s3 = self.components["s3"].url
        mlflow = self.components["mlflow"].url
        airflow_home = self.root / "airflow"
        self._ensure_password()
        previous = self.env
        env = {
            # plain clients (boto3, mlflow, great_expectations)
            "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": AWS_REGION,
            "AWS_ENDPOINT_URL_S3": s3,
            "AWS_EC2_METADATA_DISABLED": "true",
            "MLFLOW_TRACKING_URI": mlflow,
            "MLFLOW_S3_ENDPOINT_URL": s3,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "GX_ANALYTICS_ENABLED": "False",
            "NO_PROXY": f"{HOST},localhost",
            "no_proxy": f"{HOST},localhost",
            # driftloop.config.settings
            "DRIFTLOOP_BUCKET": DATA_BUCKET,
            "DRIFTLOOP_MLFLOW_TRACKING_URI": mlflow,
            "DRIFTLOOP_DATABASE_URL": f"sqlite:///{self.root / 'driftloop.db'}",
            # the ledger's MAC key lives as long as its database (kept under the root)
            "DRIFTLOOP_LEDGER_HMAC_KEY": self._fernet_key("ledger-hmac.key"),
            "DRIFTLOOP_LEDGER_ANCHOR_BUCKET": DATA_BUCKET,
            # Airflow
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.repo / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": EXECUTORS["local"],
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__API_AUTH__JWT_SECRET": previous.get("AIRFLOW__API_AUTH__JWT_SECRET")
            or secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": previous.get("AIRFLOW__API__SECRET_KEY")
            or secrets.token_urlsafe(32),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    "login": AWS_ACCESS_KEY_ID,
                    "password": AWS_SECRET_ACCESS_KEY,
                    "extra": {"endpoint_url": s3, "region_name": AWS_REGION},
                }
            ),
        }
        if "pushgateway" in self.components:
            env["DRIFTLOOP_PUSHGATEWAY_URL"] = self.components["pushgateway"].url
        if "airflow" in self.components:
            api = self.components["airflow"]
            log_server = self.components.get(
                "airflow-worker1", self.components["airflow-scheduler"]
            )
            env.update(
                {
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self._sqlalchemy_url(),
                    "AIRFLOW__CORE__EXECUTOR": EXECUTORS[self.airflow_executor or "local"],
                    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                    # the daily check that the scheduler starts at once waits for yesterday's
                    # data: on this stack the data comes from a person, so look every 30 s
                    # (production: every 5 minutes)
                    "DRIFTLOOP_SENSOR_POKE_S": "30",
                    "AIRFLOW__CORE__FERNET_KEY": self._fernet_key(),
                    "AIRFLOW__API__HOST": HOST,
                    "AIRFLOW__API__PORT": str(api.port),
                    "AIRFLOW__API__WORKERS": "1",
                    "AIRFLOW__API__BASE_URL": api.url,
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api.url}/execution/",
                    # the log servers of the scheduler (LocalExecutor) or of the first Celery
                    # worker (each worker gets its own port), and of the triggerer
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_server.port),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(
                        self.components["airflow-triggerer"].port
                    ),
                }
            )
            if "redis" in self.components:
                env.update(
                    {
                        "AIRFLOW__CELERY__BROKER_URL": self.components["redis"].url,
                        "AIRFLOW__CELERY__RESULT_BACKEND": self._sqlalchemy_url(
                            "db+postgresql+psycopg2"
                        ),
                        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CELERY_CONCURRENCY),
                    }
                )
        return env
