"""The operator's path through a critical drift that the policy says needs approval.

Runs the real thing: ``airflow standalone`` (api-server, scheduler, dag-processor, triggerer)
on the embedded stack; the test acts as the on-call operator through the same REST API the
Airflow UI uses: trigger the DAG with Params, wait for the Human-in-the-loop request, answer
"Retrain", and check that the drift-confirmed Asset was emitted and the answer recorded.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import REPO

pytestmark = pytest.mark.integration

DAG_ID = "drift_monitor"


class AirflowAPI:
    def __init__(self, base_url: str, user: str, password: str):
        self.base = base_url.rstrip("/")
        token = requests.post(
            f"{self.base}/auth/token", json={"username": user, "password": password}, timeout=30
        )
        token.raise_for_status()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def call(self, method: str, path: str, *, attempts: int = 5, **kwargs):
        # SQLite behind a standalone Airflow answers "database is locked" (HTTP 500) now and
        # then while the executor writes; an operator would press the button again.
        for attempt in range(attempts):
            response = self.session.request(
                method, f"{self.base}/api/v2{path}", timeout=60, **kwargs
            )
            if response.status_code < 500 or attempt == attempts - 1:
                break
            time.sleep(2)
        response.raise_for_status()
        return response.json()

    def task_states(self, run_id: str) -> dict[str, str]:
        tis = self.call(
            "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100}
        )
        return {
            ti["task_id"]: ti["state"] for ti in tis["task_instances"] if ti["map_index"] in (-1, 0)
        }


def _wait(predicate, what: str, timeout: float, interval: float = 3.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory):
    from driftloop.stack import EmbeddedStack

    with EmbeddedStack(tmp_path_factory.mktemp("ui-stack"), REPO, with_airflow_ui=True) as ui_stack:
        yield ui_stack


def test_critical_drift_waits_for_the_operator_and_records_the_answer(airflow_ui):
    import boto3

    from driftloop import history
    from driftloop.synth import S3Sink, generate_world

    env = airflow_ui.env
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    truth = generate_world(
        S3Sink(s3, env["DRIFTLOOP_BUCKET"]),
        "abrupt",
        days=42,
        drift_day=28,
        end_date="2025-12-31",
        rows_per_day=300,
        labeled_per_day=1,
    )
    api = AirflowAPI(airflow_ui.urls["airflow"], "admin", airflow_ui.admin_password)
    _wait(
        lambda: DAG_ID in {d["dag_id"] for d in api.call("GET", "/dags")["dags"]},
        "the DAG to be parsed",
        180,
    )
    api.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})

    conf = {"end_date": "2025-12-31", "hysteresis_k": 1, "hysteresis_n": 1, "approval": "required"}
    run = api.call("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    run_id = run["dag_run_id"]

    def awaiting():
        states = api.task_states(run_id)
        if "failed" in states.values() or "upstream_failed" in states.values():
            raise AssertionError(f"drift_monitor failed before asking: {states}")
        busy = {"scheduled", "queued", "running", "deferred", "up_for_retry", None}
        others_done = all(
            state not in busy
            for task, state in states.items()
            if task in ("log_to_mlflow", "push_metrics", "open_drift_event")
        )
        return states if states.get("await_approval") == "awaiting_input" and others_done else None

    states = _wait(awaiting, "the approval request", 600)
    assert states["open_drift_event"] == "success" and states["confirm_drift"] in (
        None,
        "none",
        "scheduled",
    )

    request = api.call(
        "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/await_approval/-1/hitlDetails"
    )
    assert request["options"] == ["Retrain", "Ignore"]
    assert "brightness" in request["body"]
    answer = api.call(
        "PATCH",
        f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/await_approval/-1/hitlDetails",
        json={"chosen_options": ["Retrain"]},
    )
    assert answer["chosen_options"] == ["Retrain"]

    finished = _wait(
        lambda: (
            (r := api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}"))["state"]
            in ("success", "failed")
            and r
        ),
        "the run to finish after the answer",
        300,
    )
    states = api.task_states(run_id)
    assert finished["state"] == "success", states
    assert states["confirm_drift"] == "success" and states["ignore_drift"] == "skipped"

    events = api.call(
        "GET", "/assets/events", params={"source_dag_id": DAG_ID, "source_run_id": run_id}
    )
    assert [e["extra"]["drifted_features"] for e in events["asset_events"]][0]
    engine = history.engine_for(env["DRIFTLOOP_DATABASE_URL"])
    event = history.get_event(engine, events["asset_events"][0]["extra"]["event_id"])
    assert event["status"] == "ACTIONED"
    assert event["actor"] == "admin"
    assert "Retrain" in event["note"]
    assert set(event["features"]) <= set(truth.drifted_columns) | {
        f"embedding_pc{i}" for i in range(1, 6)
    }
    from driftloop.ledger import Ledger

    ledger = Ledger(env["DRIFTLOOP_DATABASE_URL"])
    answers = ledger.entries(subject=f"drift_event:{event['id']}", kind="approval")
    assert [a.actor for a in answers] == ["admin"]
    assert ledger.verify().ok
