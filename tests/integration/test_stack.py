"""The embedded stack: real moto S3, mlflow server and Pushgateway on 127.0.0.1; and with
Airflow, PostgreSQL and the api-server, scheduler, dag-processor and triggerer as separate
processes (LocalExecutor), or Redis and two Celery workers (CeleryExecutor)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from driftloop_dev.airflow_api import AirflowAPIError
from driftloop_dev.airflow_runs import wait_until
from driftloop_dev.stack import (
    AIRFLOW_JOBS,
    CELERY_WORKERS,
    MLFLOW_BUCKET,
    EmbeddedStack,
    StackError,
    _session_members,
    _stat,
    airflow_celery_missing,
    airflow_postgres_missing,
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
    assert state["pids"] == stack.pids
    assert state["urls"] == stack.urls
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
        [sys.executable, "-m", "driftloop_dev.stack", *args, "--root", str(root)],
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
        assert urls["mlflow"] in status.stdout
        assert "healthy" in status.stdout

        env = run_cli("env", root=root)
        assert env.returncode == 0
        assert f"export MLFLOW_TRACKING_URI={urls['mlflow']}" in env.stdout.splitlines()
    finally:
        down = run_cli("down", root=root)
    assert down.returncode == 0, down.stderr
    assert_stopped(pids, ports, sessions)
    assert run_cli("status", root=root).returncode == 3
    print(f"CLI round trip: {time.monotonic() - began:.1f} s")


# --------------------------------------------------------------------------- Airflow

AIRFLOW_PARTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")


def running_stack(root: Path, **kwargs):
    stack = EmbeddedStack(root, REPO, **kwargs)
    try:
        with stack:
            yield stack
    finally:
        shutil.rmtree(root, ignore_errors=True)


VIEWER = "viewer-bob"


@pytest.fixture(scope="module")
def airflow_stack(tmp_path_factory):
    if reason := airflow_postgres_missing():
        pytest.skip(reason)
    # pytest's tmp folders are private (0700): as root, the stack lets the `postgres` user
    # through them (POSIX ACL) since PostgreSQL refuses to run as root
    root = tmp_path_factory.mktemp("airflow-stack")
    users = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{VIEWER}:viewer"}
    yield from running_stack(root, with_airflow_ui=True, extra_env=users)


def test_airflow_processes_are_healthy(airflow_stack):
    stack = airflow_stack
    names = ("postgres", "airflow", *AIRFLOW_JOBS)
    # a job is healthy while its last heartbeat is recent: on a machine busy with other work a
    # beat can come late once (seen in CI: the triggerer); unhealthy for 90 s is a failure
    deadline = time.monotonic() + 90
    report = stack.status()
    while not all(report[n]["healthy"] for n in names) and time.monotonic() < deadline:
        time.sleep(3)
        report = stack.status()
    for name in names:
        assert report[name]["healthy"], (name, report[name])
        assert Path(stack.components[name].log).stat().st_size > 0, name
    assert "redis" not in stack.components
    assert not set(CELERY_WORKERS) & set(stack.components)
    assert len({stack.pids[name] for name in names}) == len(names)  # one process each
    health = stack.airflow_client().get("monitor/health")
    assert {part: health[part]["status"] for part in AIRFLOW_PARTS} == dict.fromkeys(
        AIRFLOW_PARTS, "healthy"
    )
    env = stack.env
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert (
        f":{stack.components['postgres'].port}/airflow"
        in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__API__BASE_URL"] == stack.urls["airflow"]
    credentials = stack.root / "postgres" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as the Debian `postgres` user
        assert Path(f"/proc/{stack.pids['postgres']}").stat().st_uid != 0


def test_repo_dags_are_parsed_and_unpaused_unless_they_ask_not_to_be(airflow_stack):
    files = {p.name for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_")}

    def parsed():
        dags = airflow_stack.airflow_client().get("dags", limit=100)["dags"]
        return dags if files <= {Path(d["fileloc"]).name for d in dags} else None

    dags = wait_until(parsed, f"the DAGs of {sorted(files)}", 240)
    assert airflow_stack.airflow_client().get("importErrors")["total_entries"] == 0
    # the stack unpauses every DAG at creation except those that ask to start paused
    # (labels_landed: label-started training waits for an operator)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    start_paused = sorted(d.dag_id for d in bag.dags.values() if d.is_paused_upon_creation)
    assert sorted(d["dag_id"] for d in dags if d["is_paused"]) == start_paused
    pools = {p["name"] for p in airflow_stack.airflow_client().get("pools")["pools"]}
    assert "gpu" in pools


def test_airflow_api_helper(airflow_stack):
    token = airflow_stack.airflow_client().token()
    assert token.count(".") == 2  # a JWT
    assert airflow_stack.airflow_client().get("version")["version"].startswith("3.")
    with pytest.raises(AirflowAPIError) as missing:
        airflow_stack.airflow_client().get("dags/no_such_dag")
    assert missing.value.status == 404
    assert "no_such_dag" in missing.value.body
    # another user of extra_env's SIMPLE_AUTH_MANAGER_USERS: its generated password works
    viewer = airflow_stack.airflow_client(VIEWER)
    assert viewer.get("dags")["total_entries"] >= 0
    with pytest.raises(AirflowAPIError) as forbidden:
        viewer.post("pools", {"name": "nope", "slots": 1})
    assert forbidden.value.status == 403


def test_restart_component(airflow_stack):
    before = airflow_stack.pids["airflow-triggerer"]
    airflow_stack.restart_component("airflow-triggerer")
    assert airflow_stack.pids["airflow-triggerer"] != before
    assert airflow_stack.components["airflow-triggerer"].healthy()
    assert json.loads(airflow_stack.state_path.read_text())["pids"] == airflow_stack.pids


def test_cli_finds_the_airflow_stack_again(airflow_stack):
    root, pids = airflow_stack.root, dict(airflow_stack.pids)
    again = run_cli("up", "--ui", root=root, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert "Airflow UI:" in again.stdout
    assert json.loads((root / "stack.json").read_text())["pids"] == pids
    status = run_cli("status", root=root, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ("postgres", "airflow", *AIRFLOW_JOBS):
        assert f"{name} " in status.stdout


def stop_and_check(stack: EmbeddedStack) -> None:
    pids = dict(stack.pids)
    ports = [comp.port for comp in stack.components.values() if comp.port]
    sessions = {pid: _stat(pid).start_time for pid in pids.values()}
    assert all(port_open(port) for port in ports)
    stack.stop()
    assert_stopped(pids, ports, sessions)
    assert not stack.state_path.exists()


def test_airflow_stack_stops_every_process(airflow_stack):
    stop_and_check(airflow_stack)


PROBE_DAG = """
from __future__ import annotations

import time

from airflow.sdk import dag, task


@dag(dag_id="stack_celery_probe", schedule=None, catchup=False)
def stack_celery_probe():
    @task
    def work(n: int) -> int:
        time.sleep(4)  # long enough that the four instances overlap on both workers
        print(f"celery probe {n} done")
        return n

    work.expand(n=[0, 1, 2, 3])


stack_celery_probe()
"""


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory):
    if reason := airflow_postgres_missing() or airflow_celery_missing():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("celery-stack")
    dags = root / "dags"
    dags.mkdir()
    (dags / "stack_celery_probe.py").write_text(textwrap.dedent(PROBE_DAG))
    yield from running_stack(root, executor="celery", dags_folder=dags)


def test_celery_stack_is_healthy(celery_stack):
    report = celery_stack.status()
    for name in ("postgres", "redis", "airflow", *AIRFLOW_JOBS, *CELERY_WORKERS):
        assert report[name]["healthy"], (name, report[name])
    env = celery_stack.env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == celery_stack.urls["redis"]
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
    ports = {celery_stack.components[name].port for name in CELERY_WORKERS}
    assert len(ports) == 2  # a log server port each


def test_mapped_tasks_run_on_both_workers_with_readable_logs(celery_stack):
    api = celery_stack.airflow_client()
    dag_id = "stack_celery_probe"

    def dag_ready():
        try:
            return not api.get(f"dags/{dag_id}")["is_paused"]
        except AirflowAPIError as exc:
            if exc.status == 404:
                return False
            raise

    wait_until(dag_ready, f"{dag_id} parsed and unpaused", 240)
    run = api.post(f"dags/{dag_id}/dagRuns", {"logical_date": None})
    run_path = f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"

    def finished():
        state = api.get(run_path)["state"]
        return state if state in ("success", "failed") else None

    assert wait_until(finished, f"run {run['dag_run_id']}", 300) == "success"
    instances = api.get(f"{run_path}/taskInstances")["task_instances"]
    mapped = sorted(
        (ti for ti in instances if ti["task_id"] == "work"), key=lambda t: t["map_index"]
    )
    assert [ti["map_index"] for ti in mapped] == [0, 1, 2, 3]
    assert {ti["state"] for ti in mapped} == {"success"}
    # each worker reports a hostname of its own (127.0.0.2, 127.0.0.3)
    assert {ti["hostname"] for ti in mapped} == {"127.0.0.2", "127.0.0.3"}, mapped
    for ti in mapped:
        logs = api.get(
            f"{run_path}/taskInstances/work/logs/{ti['try_number']}", map_index=ti["map_index"]
        )
        assert f"celery probe {ti['map_index']} done" in json.dumps(logs["content"]), logs


def test_celery_stack_stops_every_process(celery_stack):
    stop_and_check(celery_stack)
