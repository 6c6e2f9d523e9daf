"""The UI check's rollout checks pass on a stack in mid-rollout and fail when it is not there.

A stack of its own (the shape of ``make up``: PostgreSQL, api-server, scheduler, dag-processor
and triggerer as separate processes; its root under pytest's tmp, never ``.stack``) with a
rollout set up the cheap way: three tiny registered versions holding ``previous-champion``,
``champion`` and ``challenger``, the routing document in stage shadow, and a ``rollout_guard``
run triggered through the REST API (``logical_date: null``), which reads the stage and holds.
Then, in headless Chromium:

- ``rollout_dags``, ``rollout_guard_run`` and ``mlflow_aliases`` pass, and name the shadow
  stage and the three aliases on their versions;
- with the ``challenger`` alias deleted and ``drift_accept_new_normal`` paused,
  ``mlflow_aliases`` and ``rollout_dags`` fail, naming the alias and the DAG.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop_dev.airflow_runs import task_states, trigger, wait_for_run, wait_until, xcom
from driftloop_dev.ui_check import CHROMIUM, EXPECTED_ALIASES, ROLLOUT_DAGS, run_ui_check
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

GUARD = "rollout_guard"
ROLLOUT_CHECKS = ("rollout_dags", "rollout_guard_run", "mlflow_aliases")


@pytest.fixture(scope="module")
def rollout_stack(tmp_path_factory):
    """The running stack with a rollout in stage shadow and the guard's run of it; yields
    ``(stack, {"versions": …, "run_id": …, "summary": …})``."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make system-deps installs Debian's chromium)")
    from driftloop_dev.stack import EmbeddedStack

    root = tmp_path_factory.mktemp("ui-check-rollout-stack")
    extra_env = {
        # the runs the scheduler starts by itself end soon: the daily check gives up on
        # yesterday's data at once, the scheduled retraining is the yearly one
        "DRIFTLOOP_SENSOR_TIMEOUT_S": "20",
        "DRIFTLOOP_SENSOR_POKE_S": "5",
        "DRIFTLOOP_RETRAIN_CRON": "0 4 1 1 *",
    }
    stack = EmbeddedStack(root, REPO, with_airflow_ui=True, extra_env=extra_env)
    try:
        stack.start()
        yield stack, _rollout(stack)
    finally:
        stack.stop()


def _rollout(stack) -> dict:
    import boto3
    from mlflow import MlflowClient

    from driftloop.config.settings import Settings
    from driftloop.promotion.routing import Stamp, next_shadow_doc, write_routing
    from tests.integration.test_rollout_transitions import _versions

    env, api = stack.env, stack.airflow_client()
    settings = Settings.from_env(env)
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.urls["s3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    model = settings.registered_model
    previous, champion, challenger = _versions(client, model, 3)
    for alias, version in zip(EXPECTED_ALIASES, (champion, challenger, previous), strict=True):
        client.set_registered_model_alias(model, alias, version)
    doc = next_shadow_doc(
        None,
        Stamp("tests/ui_check_rollout", "a rollout for the UI check"),
        model=model,
        champion=champion,
        challenger=challenger,
    )
    write_routing(s3, settings.bucket, doc)
    wait_until(
        lambda: set(ROLLOUT_DAGS) <= {d["dag_id"] for d in api.get("dags", limit=100)["dags"]},
        "the DAGs to be parsed",
        300,
    )
    run_id = trigger(api, GUARD)["dag_run_id"]
    wait_for_run(api, GUARD, run_id, 600)
    states = task_states(api, GUARD, run_id)
    assert (states["routing"], states["hold"]) == ("success", "success"), states
    summary = xcom(api, GUARD, run_id, "routing", "rollout_stage")
    assert summary == doc.summary()
    versions = {"champion": champion, "challenger": challenger, "previous-champion": previous}
    return {"client": client, "model": model, "versions": versions, "run_id": run_id}


def _check(stack, out: Path, only, **options):
    return run_ui_check(
        stack.urls["airflow"],
        "admin",
        stack.admin_password,
        out,
        mlflow_url=stack.urls["mlflow"],
        only=only,
        **options,
    )


def test_the_rollout_checks_see_the_stage_and_the_aliases(rollout_stack, tmp_path):
    stack, world = rollout_stack
    result = _check(stack, tmp_path, ROLLOUT_CHECKS)
    assert result.ok, {name: result.check(name).detail for name in result.failed}
    assert [c.name for c in result.checks] == ["login", *ROLLOUT_CHECKS]

    guard = result.check("rollout_guard_run")
    # the newest run in a rollout stage: the one triggered here (or, past the hour, the
    # scheduler's hourly run, which read the same document)
    assert guard.data["stage"] == "shadow"
    assert guard.data["run_id"] == world["run_id"] or guard.data["type"] == "scheduled"
    assert "shadows" in guard.detail
    aliases = result.check("mlflow_aliases")
    assert aliases.data["shown"] == world["versions"] == aliases.data["registry"]
    for alias, version in world["versions"].items():
        assert f"{alias} on v{version}" in aliases.detail
    assert set(result.check("rollout_dags").data["dags"]) == set(ROLLOUT_DAGS)
    for name in ("rollout-dags.png", "rollout-guard-run.png", "mlflow-aliases.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    print({c.name: c.detail for c in result.checks})


def test_a_missing_alias_and_a_paused_dag_fail(rollout_stack, tmp_path):
    stack, world = rollout_stack
    client, model, api = world["client"], world["model"], stack.airflow_client()
    client.delete_registered_model_alias(model, "challenger")
    api.patch("dags/drift_accept_new_normal", {"is_paused": True})
    try:
        result = _check(stack, tmp_path, ("rollout_dags", "mlflow_aliases"))
        assert result.failed == ["rollout_dags", "mlflow_aliases"]
        assert "drift_accept_new_normal is paused" in result.check("rollout_dags").detail
        detail = result.check("mlflow_aliases").detail
        assert "'challenger'" in detail, detail
        assert "champion on" not in detail  # only the missing one is named
        assert (tmp_path / "mlflow-aliases.png").exists()

        # the aliases that are there pass when only they are expected
        result = _check(
            stack,
            tmp_path / "two",
            ("mlflow_aliases",),
            expect_aliases=("champion", "previous-champion"),
        )
        assert result.ok, result.check("mlflow_aliases").detail
    finally:
        client.set_registered_model_alias(model, "challenger", world["versions"]["challenger"])
        api.patch("dags/drift_accept_new_normal", {"is_paused": False})
