"""labels_landed: announce each labeled day that landed, once, with the driftloop_labels Asset.

### labels_landed

Runs every hour (`DRIFTLOOP_LABELS_CRON`, UTC) or by hand. A labeled day is complete when
`labeled/dt=D/_SUCCESS` exists (the label import writes it last). **Paused when first
deployed**: its first run would announce every labeled day already in the bucket, and without
a champion that starts a first training; unpause it once that is what you want.

1. `find_new_days` — the complete labeled days that no record `labels/announced/dt=D.json`
   names yet, each with its number of labeled frames (image + label pairs).
2. `announce_labels` — emits the `driftloop_labels` Asset event, its extra
   `{"day": <latest>, "days": [...], "frames": <all>, "frames_per_day": {...}}`; it *skips*
   (no event) when no new day holds a frame. `retrain_detector` listens: it trains once the
   training window holds enough labeled frames its champion was not trained on (promotion
   policy `new_labels.min_frames`), and otherwise says how many there are and skips.
3. `record_announced` — the write-once record of each day found (also one without frames),
   after the event: a run that fails in between announces the day again next time, at least
   once, never lost.

A labeling pipeline may announce a day itself instead (`POST /api/v2/assets/events` on
`driftloop_labels` with `extra={"day": "YYYY-MM-DD", "frames": n}`). An S3 error fails the
task (retried), never reads as "nothing landed".
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task

from driftloop.airflow.assets import LABELS
from driftloop.airflow.notifiers import task_failure_notifier
from driftloop.airflow.s3 import s3_for_task
from driftloop.config.settings import Settings

# the schedule is read when the file is parsed (DRIFTLOOP_LABELS_CRON)
SETTINGS = Settings.from_env()


@dag(
    dag_id="labels_landed",
    schedule=CronTriggerTimetable(SETTINGS.labels_cron, timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one run writes the records at a time
    is_paused_upon_creation=True,  # new labels start trainings only once an operator says so
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "on_failure_callback": task_failure_notifier(),
    },
    doc_md=__doc__,
    tags=["driftloop", "labels", "training"],
    params={
        "reason": Param(
            "",
            type="string",
            description="Why this run was triggered by hand (a re-import, a late day): kept "
            "in the records of the days it announces.",
        ),
    },
)
def labels_landed():
    @task
    def find_new_days(dag=None, dag_run=None) -> list[dict]:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.airflow.run_conf import check_conf_keys
        from driftloop.retrain.labels_landed import new_labeled_days

        try:
            check_conf_keys(dag_run.conf, list(dag.params), dag.dag_id)
        except ValueError as err:  # a typo in the conf: no retry fixes it
            raise AirflowFailException(str(err)) from err
        s3, settings = s3_for_task()
        return new_labeled_days(s3, settings.bucket)

    @task(outlets=[LABELS])
    def announce_labels(found: list[dict], outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from driftloop.retrain.labels_landed import announcement

        extra = announcement(found)
        if extra is None:  # a skipped task emits no Asset event
            raise AirflowSkipException(
                f"no new labeled frames ({len(found)} new complete day(s) without frames)"
            )
        outlet_events[LABELS].extra = extra
        return extra

    # none_failed: also after a skipped announcement (days without frames are recorded too)
    @task(trigger_rule="none_failed")
    def record_announced(found: list[dict], params=None, run_id=None) -> list[str]:
        from driftloop.retrain.labels_landed import record_announced as record

        s3, settings = s3_for_task()
        by = f"{run_id}: {params['reason']}" if params.get("reason") else run_id
        return record(s3, settings.bucket, found, by)

    found = find_new_days()
    announce_labels(found) >> record_announced(found)


labels_landed()
