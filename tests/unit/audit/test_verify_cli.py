"""`driftloop ledger verify|anchor` with the key and the anchors, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from driftloop.audit.anchor import AnchorStore
from driftloop.audit.ledger import Ledger

REPO = Path(__file__).resolve().parents[3]
KEY = "0123456789abcdef0123456789abcdef-test-key"


def cli(*args, env):
    full = {**os.environ, "PYTHONPATH": str(REPO / "include"), **env}
    return subprocess.run(
        [sys.executable, "-m", "driftloop.ledger", *args],
        capture_output=True, text=True, env=full, timeout=120, check=False,
    )  # fmt: skip


def test_verify_and_anchor_commands(tmp_path, s3_client, bucket, s3_endpoint):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger = Ledger(url, hmac_key=KEY.encode(), anchors=AnchorStore(s3_client, bucket))
    for i in range(4):
        ledger.append(
            "evaluation", actor="a", subject="s", payload={"i": i}, idempotency_key=f"{i}"
        )
    env = {
        "DRIFTLOOP_DATABASE_URL": url,
        "DRIFTLOOP_LEDGER_HMAC_KEY": KEY,
        "DRIFTLOOP_LEDGER_ANCHOR_BUCKET": bucket,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # a shell inside a worker: the CLI still uses boto3's environment, not the task's hook
        "AIRFLOW_CTX_DAG_ID": "retrain_detector",
        "AIRFLOW_CONN_AWS_DEFAULT": "aws://?endpoint_url=http%3A%2F%2F127.0.0.1%3A9",
    }
    ok = cli("verify", "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert (doc["ok"], doc["rows"], doc["macs_checked"], doc["anchors"]) == (True, 4, 4, 4)
    assert doc["unkeyed"] is None
    assert doc["notes"] == []
    assert KEY not in ok.stdout + ok.stderr

    with ledger.engine.begin() as conn:  # a writer of the table truncates it
        conn.execute(sa.text("DROP TRIGGER audit_ledger_no_delete"))
        conn.execute(sa.text("DELETE FROM audit_ledger WHERE id = 4"))
    bad = cli("verify", env=env)
    assert bad.returncode == 1
    assert bad.stdout.startswith("ledger TAMPERED: row 4: row 4 deleted (anchor s3://")
    no_key = cli("verify", "--json", env={**env, "DRIFTLOOP_LEDGER_HMAC_KEY": ""})
    assert no_key.returncode == 1
    assert "no ledger key was given" in " ".join(
        p["reason"] for p in json.loads(no_key.stdout)["problems"]
    )

    # a writer reuses id 4 for a new row: the deleted row's anchor still holds the old one
    Ledger(url, hmac_key=KEY.encode()).append(
        "evaluation", actor="a", subject="s", payload={}, idempotency_key="late"
    )
    reused = cli("verify", env=env)
    assert reused.returncode == 1
    assert "row 4: row 4 differs from its anchor" in reused.stdout
    # `ledger anchor` anchors every intact row that has none (here: a new, empty bucket)
    s3_client.create_bucket(Bucket=bucket + "-new")
    written = cli("anchor", "--json", "--anchor-bucket", bucket + "-new", env=env)
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout)["written"] == [1, 2, 3, 4]
    again = cli("anchor", "--anchor-bucket", bucket + "-new", env=env)
    assert again.stdout.strip() == "anchors written: 0 (none missing)"
