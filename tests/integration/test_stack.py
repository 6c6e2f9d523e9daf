"""The embedded stack: real moto S3, mlflow server and Pushgateway on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from driftloop.stack import (
    MLFLOW_BUCKET,
    EmbeddedStack,
    StackError,
    _session_members,
    _stat,
    port_open,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


STALE = b"left over from a stack whose S3 is gone"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    # a previous stack's stores, pointing into a moto S3 that died with it
    (root / "mlflow").mkdir()
    (root / "mlflow" / "mlflow.db").write_bytes(STALE)
    (root / "driftloop.db").write_bytes(STALE)
    with EmbeddedStack(root, REPO) as running:
        yield running


def test_a_fresh_stack_starts_with_fresh_stores(stack):
    for path in (stack.root / "mlflow" / "mlflow.db", stack.root / "driftloop.db"):
        assert not path.exists() or STALE not in path.read_bytes(), path


def s3_client(env):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def assert_stopped(pids: dict[str, int], ports: list[int], sessions: dict[int, int]) -> None:
    for name, pid in pids.items():
        stat = _stat(pid)
        assert stat is None or stat.state in ("Z", "X") or stat.start_time != sessions[pid], name
        assert not _session_members(pid, sessions[pid]), f"{name}: processes left in its session"
    for port in ports:
        assert not port_open(port), f"port {port} still open"


def test_env_points_at_the_stack(stack):
    env = stack.env
    assert env["DRIFTLOOP_BUCKET"] == "driftloop"
    assert (
        env["DRIFTLOOP_MLFLOW_TRACKING_URI"] == env["MLFLOW_TRACKING_URI"] == stack.urls["mlflow"]
    )
    assert env["DRIFTLOOP_DATABASE_URL"] == f"sqlite:///{stack.root / 'driftloop.db'}"
    assert env["AWS_ENDPOINT_URL_S3"] == stack.urls["s3"]
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
    assert "AIRFLOW__CORE__UNIT_TEST_MODE" not in env
    conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert conn["conn_type"] == "aws"
    assert conn["extra"]["endpoint_url"] == stack.urls["s3"]
    assert json.loads(stack.passwords_file.read_text())["admin"] == stack.admin_password
    state = json.loads(stack.state_path.read_text())
    assert state["pids"] == stack.pids and state["urls"] == stack.urls
    if "pushgateway" in stack.skipped:
        assert "DRIFTLOOP_PUSHGATEWAY_URL" not in env
    else:
        assert env["DRIFTLOOP_PUSHGATEWAY_URL"] == stack.urls["pushgateway"]


def test_s3_roundtrip(stack):
    client = s3_client(stack.env)
    client.put_object(Bucket="driftloop", Key="probe/hello.txt", Body=b"hello")
    body = client.get_object(Bucket="driftloop", Key="probe/hello.txt")["Body"].read()
    assert body == b"hello"


def test_mlflow_run_artifact_lands_in_moto(stack, tmp_path, monkeypatch):
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # the fluent API's tracking URI is process-global: restore it after this test so later
    # tests do not talk to this module's stack once it is stopped
    monkeypatch.setattr(tracking_utils, "_tracking_uri", stack.urls["mlflow"])
    experiment_id = mlflow.create_experiment(f"stack-test-{uuid.uuid4().hex[:8]}")
    artifact = tmp_path / "note.txt"
    artifact.write_text("drift report placeholder")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("psi", 0.12)
        mlflow.log_artifact(str(artifact), artifact_path="reports")
    client = mlflow.MlflowClient(stack.urls["mlflow"])
    assert client.get_run(run.info.run_id).data.metrics["psi"] == pytest.approx(0.12)

    listing = s3_client(stack.env).list_objects_v2(Bucket=MLFLOW_BUCKET, Prefix="artifacts/")
    keys = [obj["Key"] for obj in listing.get("Contents", [])]
    assert any(key.endswith(f"{run.info.run_id}/artifacts/reports/note.txt") for key in keys), keys


def test_pushgateway_push_and_read_back(stack):
    if "pushgateway" in stack.skipped:
        pytest.skip(stack.skipped["pushgateway"])
    url = stack.env["DRIFTLOOP_PUSHGATEWAY_URL"]
    push = urllib.request.Request(
        f"{url}/metrics/job/driftloop_stack_test",
        data=b"driftloop_stack_test_psi 0.25\n",
        method="PUT",
    )
    with NO_PROXY.open(push, timeout=5) as response:
        assert response.status in (200, 202)
    with NO_PROXY.open(f"{url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'driftloop_stack_test_psi{instance="",job="driftloop_stack_test"} 0.25' in metrics


def test_stop_kills_every_process_and_frees_ports(stack):
    pids = dict(stack.pids)
    ports = [comp.port for comp in stack.components.values()]
    sessions = {pid: _stat(pid).start_time for pid in pids.values()}
    assert all(port_open(port) for port in ports)
    stack.stop()
    assert_stopped(pids, ports, sessions)
    assert not stack.state_path.exists()
    stack.stop()  # idempotent


def test_startup_failure_reports_the_log_tail(tmp_path):
    stack = EmbeddedStack(tmp_path, REPO)
    stack._define(
        "s3", 1, [sys.executable, "-c", "print('boom: cannot start'); raise SystemExit(3)"]
    )
    stack._spawn("s3", {})
    with pytest.raises(StackError, match="boom: cannot start") as failure:
        stack._wait_healthy("s3")
    assert "exited (code 3)" in str(failure.value)
    stack.stop()


def test_stop_leaves_a_reused_pid_alone(tmp_path):
    """A recorded PID that now runs another command is not ours: stop() must not touch it."""
    me = os.getpid()
    stack = EmbeddedStack(tmp_path, REPO)
    stack._define("s3", 1, [sys.executable, "-m", "moto.server", "-p", "1"])
    stack.components["s3"].pid = me
    stack.components["s3"].start_time = _stat(me).start_time
    assert not stack.components["s3"].owns_pid()
    assert stack.components["s3"].processes() == {}
    stack.stop()  # would kill pytest itself if it trusted the PID
    assert _stat(me) is not None


def run_cli(*args: str, root: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "driftloop.stack", *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DRIFTLOOP"))},
        check=False,
    )


def test_cli_up_status_env_down(tmp_path):
    root = tmp_path / "cli-stack"
    began = time.monotonic()
    up = run_cli("up", "--no-airflow-db", root=root)
    assert up.returncode == 0, up.stderr
    assert "started in" in up.stdout
    state = json.loads((root / "stack.json").read_text())
    pids, urls = state["pids"], state["urls"]
    ports = list(state["ports"].values())
    sessions = {pid: _stat(pid).start_time for pid in pids.values()}
    try:
        # the components outlived the `up` process
        assert all(port_open(port) for port in ports)
        again = run_cli("up", "--no-airflow-db", root=root)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert json.loads((root / "stack.json").read_text())["pids"] == pids

        status = run_cli("status", root=root)
        assert status.returncode == 0, status.stdout + status.stderr
        assert urls["mlflow"] in status.stdout and "healthy" in status.stdout

        env = run_cli("env", root=root)
        assert env.returncode == 0
        assert f"export MLFLOW_TRACKING_URI={urls['mlflow']}" in env.stdout.splitlines()
    finally:
        down = run_cli("down", root=root)
    assert down.returncode == 0, down.stderr
    assert_stopped(pids, ports, sessions)
    assert run_cli("status", root=root).returncode == 3
    print(f"CLI round trip: {time.monotonic() - began:.1f} s")
