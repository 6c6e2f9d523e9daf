"""The ledger the loop writes to, built from :class:`~driftloop.config.settings.Settings`.

* ``DRIFTLOOP_LEDGER_HMAC_KEY`` — the rows' MAC key. Give it to the processes that append
  (Airflow tasks) and to whoever verifies, from a secret store; never to the database.
* ``DRIFTLOOP_LEDGER_ANCHOR_BUCKET`` — the bucket of the write-once anchors
  (``audit/anchors/<id>.json``). S3 client: inside an Airflow task the one of the task's AWS
  connection (``aws_conn_id``), elsewhere (the CLI) boto3's own environment.

When they are not set. On a server database (PostgreSQL — production) the ledger refuses to
open without both: appends would be unkeyed and unanchored, which is exactly the ledger that a
writer of its table can rewrite unnoticed (fail closed). On a SQLite file (unit tests, a
developer's scratch database) a missing key gives unkeyed rows and a missing bucket no
anchors, and ``verify`` says so ("unkeyed legacy rows", "anchors not checked"); the embedded
stack sets both, so the demo runs the real thing. Once a ledger holds keyed rows, an unkeyed
append is refused whatever the database.
"""

from __future__ import annotations

import os

from driftloop.audit.anchor import AnchorStore
from driftloop.audit.ledger import Ledger, LedgerError
from driftloop.config.settings import Settings


def anchor_s3_client(settings: Settings):
    """The S3 client that writes anchors: the task's Airflow connection inside a task (the
    task runner exports ``AIRFLOW_CTX_DAG_ID``), boto3's environment elsewhere."""
    if os.environ.get("AIRFLOW_CTX_DAG_ID"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
    from driftloop.contracts.storage import s3_client

    return s3_client()


def ledger_for(settings: Settings, *, s3=None, create: bool = True) -> Ledger:
    """The audit ledger of ``settings``: its database, key and anchors (``s3``: the client
    for the anchors, default :func:`anchor_s3_client`)."""
    key = settings.ledger_hmac_key
    bucket = settings.ledger_anchor_bucket
    server_database = not settings.database_url.startswith("sqlite")
    if server_database and (key is None or not bucket):
        missing = [
            name
            for name, value in (
                ("DRIFTLOOP_LEDGER_HMAC_KEY", key),
                ("DRIFTLOOP_LEDGER_ANCHOR_BUCKET", bucket),
            )
            if not value
        ]
        raise LedgerError(
            f"the audit ledger on a server database needs {' and '.join(missing)}: without "
            "them a writer of the table could rewrite it unnoticed"
        )
    anchors = None
    if bucket:
        anchors = AnchorStore(s3 if s3 is not None else anchor_s3_client(settings), bucket)
    return Ledger(
        settings.database_url,
        hmac_key=None if key is None else key.get_secret_value().encode("utf-8"),
        anchors=anchors,
        create=create,
    )
