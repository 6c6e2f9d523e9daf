"""drift_monitor on Airflow's own scale-out engine: the CeleryExecutor with two workers.

The shape of ``make up CELERY=1`` (and, with more workers, of compose and the Helm chart):
Redis as the broker, PostgreSQL as metadata DB and result backend, two Celery workers, each
reporting a host name of its own. One check triggered through the REST API must spread its
mapped ``profile_partition`` instances over both workers, and every task's log must be
readable through the API wherever it ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop_dev.airflow_runs import task_instances, trigger, wait_for_run, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
END_DAY = "2025-12-31"


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory):
    from driftloop_dev.stack import EmbeddedStack, airflow_celery_missing

    missing = airflow_celery_missing()
    if missing:
        pytest.skip(missing)
    stack = EmbeddedStack(tmp_path_factory.mktemp("celery-stack"), REPO, executor="celery")
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def test_mapped_partitions_spread_over_both_workers(celery_stack):
    import boto3

    from driftloop_dev.synth import S3Sink, generate_world

    env, api = celery_stack.env, celery_stack.airflow_client()
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    generate_world(
        S3Sink(s3, env["DRIFTLOOP_BUCKET"]),
        "abrupt",
        days=30,
        drift_day=24,
        end_date=END_DAY,
        rows_per_day=300,
        labeled_per_day=1,
    )
    wait_until(
        lambda: "drift_monitor" in {d["dag_id"] for d in api.get("dags", limit=100)["dags"]},
        "drift_monitor to be parsed",
        300,
    )
    run_id = trigger(api, "drift_monitor", {"end_date": END_DAY})["dag_run_id"]
    wait_for_run(api, "drift_monitor", run_id, 1200)

    instances = task_instances(api, "drift_monitor", run_id)
    mapped = [ti for ti in instances if ti["task_id"] == "profile_partition"]
    assert len(mapped) == 14  # one per day of the current window
    hosts = {ti["hostname"] for ti in mapped}
    assert len(hosts) == 2, f"profile_partition ran on {hosts}"
    for ti in instances:
        if ti["state"] != "success" or not ti["hostname"]:
            continue  # branches not taken, and what the scheduler completes itself
        body = api.get(
            f"dags/drift_monitor/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/"
            f"{ti['try_number']}",
            map_index=ti["map_index"],
            full_content="true",
        )
        events = [str(line.get("event", "")) for line in body["content"]]
        text = "\n".join(events)
        assert "Log file not found" not in text, ti
        assert "Could not read served logs" not in text, ti
        assert len(events) >= 2, (ti["task_id"], ti["map_index"], events)
