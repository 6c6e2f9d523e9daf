"""The S3 client a task uses: the configured Airflow connection's, never boto3's defaults."""

from __future__ import annotations

from driftloop.config.settings import Settings


def s3_for_task():
    """The S3 client of the configured Airflow connection, and the settings: call it inside a
    task (it creates a hook), never at parse time."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    settings = Settings.from_env()
    return S3Hook(aws_conn_id=settings.aws_conn_id).get_conn(), settings
