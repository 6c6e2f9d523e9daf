"""Runtime settings, read from ``DRIFTLOOP_*`` environment variables.

The embedded stack (``driftloop_dev.stack``) exports these into every process it starts; in
production ``docker-compose.yaml`` (or the Helm values) set them. S3 credentials never come
from here: tasks use the Airflow connection named by ``aws_conn_id``, command-line tools use
boto3's own environment (``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID`` …).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = CONFIG_DIR.parent
DEFAULT_POLICY_PATH = CONFIG_DIR / "drift_policy.yaml"


@dataclass(frozen=True)
class Settings:
    bucket: str = "driftloop"
    aws_conn_id: str = "aws_default"
    mlflow_tracking_uri: str | None = None
    database_url: str = "sqlite:///driftloop.db"
    pushgateway_url: str | None = None
    policy_path: str = str(DEFAULT_POLICY_PATH)
    registered_model: str = "driftloop-detector"
    drift_experiment: str = "drift-monitor"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()

        def get(name: str, default):
            value = env.get(f"DRIFTLOOP_{name.upper()}")
            return default if value in (None, "") else value

        return cls(
            bucket=get("bucket", defaults.bucket),
            aws_conn_id=get("aws_conn_id", defaults.aws_conn_id),
            mlflow_tracking_uri=get("mlflow_tracking_uri", env.get("MLFLOW_TRACKING_URI")),
            database_url=get("database_url", defaults.database_url),
            pushgateway_url=get("pushgateway_url", defaults.pushgateway_url),
            policy_path=get("policy_path", defaults.policy_path),
            registered_model=get("registered_model", defaults.registered_model),
            drift_experiment=get("drift_experiment", defaults.drift_experiment),
        )
