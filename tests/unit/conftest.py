"""Fixtures of the unit tests that talk to S3: one moto server over HTTP per session — the
server the embedded stack runs (``python -m moto.server``), on a free loopback port, stopped
by its own PID — so requests go through botocore's whole HTTP path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: what the embedded stack of the integration tests puts in os.environ that would turn the unit
#: tests' own SQLite ledgers into keyed, anchored ones (in the stack's bucket)
STACK_LEDGER_VARIABLES = ("DRIFTLOOP_LEDGER_HMAC_KEY", "DRIFTLOOP_LEDGER_ANCHOR_BUCKET")


def _task_context_variables() -> list[str]:
    """``AIRFLOW_CTX_*``: ``dag.test()`` leaves the last task's context in os.environ, which
    makes code (and subprocesses) that follow believe they run inside that task."""
    return [name for name in os.environ if name.startswith("AIRFLOW_CTX_")]


@pytest.fixture(autouse=True)
def _no_stack_ledger(monkeypatch):
    """Unit tests set up the ledger they test; a test that wants a key or anchors sets them."""
    for name in (*STACK_LEDGER_VARIABLES, *_task_context_variables()):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def moto_endpoint():
    """The URL of a moto S3 server for the whole session (tests use their own buckets)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def s3_client_for(endpoint: str):
    """A boto3 S3 client of the moto server, one attempt per call (an injected store fault is
    seen at once)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
