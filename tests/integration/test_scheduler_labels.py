"""New labels under the real scheduler: a ``driftloop_labels`` event starts retrain_detector.

The stack of ``make up`` (PostgreSQL; api-server, scheduler, dag-processor, triggerer as
separate processes), driven through the REST API only, and only ``retrain_detector``
unpaused. A champion is registered whose training snapshot holds 2 of the 14 frames of a
labeled day; a labeling pipeline announces that day through the REST API (``POST
/api/v2/assets/events``, ``extra={"day", "frames"}``). The Asset-triggered run plans a
retraining for new labels, counts 12 frames new to the champion, fewer than the policy's
``new_labels.min_frames``, and skips training with the reason in its plan and the ledger.
No model is trained. The timeline goes to ``.stack/e2e-labels-timeline.md``.
"""

from __future__ import annotations

import pytest

from driftloop_dev.airflow_runs import (
    announce_labeled_day,
    dag_runs,
    task_states,
    wait_for_run,
    wait_until,
    xcom,
)
from tests.integration.registry_versions import register_versions
from tests.integration.scheduler_support import (
    REPO,
    Timeline,
    running_scheduler_stack,
    serving_s3,
    wait_for_all_runs,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

RETRAIN = "retrain_detector"
DAY = "2032-06-10"  # a day no other test writes (the stack is this module's own)
FRAMES, IN_SNAPSHOT = 14, 2
SHA = "e" * 64


def _write_labeled_day(s3, bucket: str) -> list[str]:
    """The label import: frames, then ``_SUCCESS``; their stems."""
    from driftloop.contracts import storage

    prefix = storage.labeled_prefix(DAY)
    stems = [f"{DAY}-{i:04d}" for i in range(FRAMES)]
    for stem in stems:
        s3.put_object(Bucket=bucket, Key=f"{prefix}images/{stem}.png", Body=b"png")
        s3.put_object(Bucket=bucket, Key=f"{prefix}labels/{stem}.txt", Body=b"0 .5 .5 .2 .2\n")
    s3.put_object(Bucket=bucket, Key=prefix + storage.SUCCESS_MARKER, Body=b"")
    return stems


def test_a_labels_event_starts_a_retraining_that_skips_with_few_new_frames(tmp_path_factory):
    from mlflow import MlflowClient

    from driftloop.audit.wiring import ledger_for
    from driftloop.config.settings import Settings
    from driftloop.contracts import storage
    from driftloop.promotion import registry
    from driftloop_dev.golden import publish_golden_set

    extra_env = {
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        # the scheduled retraining once a year: its latest run's window has no labeled frames
        "DRIFTLOOP_RETRAIN_CRON": "0 4 1 1 *",
    }
    root = tmp_path_factory.mktemp("labels-stack")
    with running_scheduler_stack(root, extra_env) as stack:
        env, api, timeline = stack.env, stack.airflow_client(), Timeline((RETRAIN,))
        s3, settings = serving_s3(stack), Settings.from_env(stack.env)
        try:
            publish_golden_set(s3, settings.bucket)
            stems = _write_labeled_day(s3, settings.bucket)
            # the champion was trained on a snapshot that holds the day's first frames
            manifest = {
                "sha256": SHA,
                "sources": {
                    f"images/train/{s}.png": f"{storage.labeled_prefix(DAY)}images/{s}.png"
                    for s in stems[:IN_SNAPSHOT]
                },
            }
            storage.put_json_once(s3, settings.bucket, f"datasets/{SHA}/manifest.json", manifest)
            client = MlflowClient(env["MLFLOW_TRACKING_URI"])
            (champion,) = register_versions(
                client, settings.registered_model, 1, "labels-test", {"dataset_sha256": SHA}
            )
            client.set_registered_model_alias(
                settings.registered_model, registry.CHAMPION, champion
            )
            timeline.note(f"champion v{champion}; {FRAMES} labeled frames of {DAY} landed")
            wait_until(
                lambda: RETRAIN in {d["dag_id"] for d in api.get("dags", limit=100)["dags"]},
                "retrain_detector to be parsed",
                300,
            )
            api.patch(f"dags/{RETRAIN}", {"is_paused": False})

            announce_labeled_day(api, DAY, FRAMES)
            timeline.note(f"labeling pipeline announced {DAY} through the REST API")
            run = wait_until(
                lambda: next(iter(dag_runs(api, RETRAIN, run_type="asset_triggered")), None),
                "the Asset-triggered retraining",
                300,
            )
            run_id = run["dag_run_id"]
            wait_for_run(api, RETRAIN, run_id, 900)
            plan = xcom(api, RETRAIN, run_id, "plan")
            assert plan["trigger"]["kind"] == "labels"
            assert plan["trigger"]["labeled_days"] == [DAY]
            assert plan["days"][-1] == DAY  # the window ends on the announced day
            assert plan["action"] == "skip"
            reason = "12 new labeled frames since the champion's snapshot, policy needs 200"
            assert plan["skip_reason"] == reason
            assert plan["new_labels"]["champion"] == champion
            states = task_states(api, RETRAIN, run_id)
            assert states["skip_training"] == "success", states
            for task in ("snapshot_dataset", "open_review", "train", "record_failure"):
                assert states[task] == "skipped", (task, states)
            book = ledger_for(settings, s3=s3)
            skips = [
                e for e in book.entries(kind="training_run") if e.payload.get("status") == "skipped"
            ]
            assert [(e.actor, e.payload["reason"]) for e in skips] == [
                (f"airflow:{run_id}", reason)
            ]
            assert book.verify().ok
            # the champion did not move; nothing was trained or registered
            assert registry.aliases(client, settings.registered_model) == {"champion": champion}
            wait_for_all_runs(api, RETRAIN, 600)  # the scheduled run, started on unpause
        finally:
            print(timeline.write(api, REPO / ".stack" / "e2e-labels-timeline.md"))
