"""labeling_queue: every day, the served frames worth a human label, as a labeling batch.

### labeling_queue

Runs daily (`DRIFTLOOP_LABELING_CRON`, default 05:30 UTC) on **yesterday's** served frames,
or on the `day` you give when you **Trigger** it by hand. Of the day's frames
(`frames/dt=D/_frames.jsonl`, scored by the batch scorer: `inference/dt=D/`,
`serving/dt=D/`) it picks at most `labeling.budget_per_day` frames (drift policy) by four
signals:

| signal | what it finds |
|---|---|
| uncertainty | frames the served model is least sure about (mean confidence near 0.5) |
| disagreement | frames where champion and challenger boxes disagree (shadow / canary / guard) |
| novelty | frames far from the reference (the champion's training window) in embedding space |
| new_camera | frames of cameras the reference never saw |

Each signal has a quota of the budget, the rest goes by the weighted score
(`driftloop.labeling.select`). A frame queued before, or already labeled, is never picked
again. The batch, written once to `s3://<bucket>/labeling/<day>/`: `tasks.json` (Label Studio
tasks, the model's boxes as pre-annotations; `label_config.xml` is the interface),
`yolo/labels/*.txt` + `yolo/classes.txt`, `images.txt` (the frames' `s3://` URIs: images are
listed, not copied) and `manifest.json` (why each frame was picked).

When the labels are back: `driftloop labels import --batch-day <day> --export export.json`
writes `labeled/dt=<day>/` with the queue's provenance in `frames.jsonl`, and the next
snapshot takes them.

A day without frames ends the run skipped; a day not served yet fails and is retried; a run
for a day already queued returns the batch it wrote (nothing is rewritten).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task

from driftloop.airflow.notifiers import task_failure_notifier
from driftloop.airflow.s3 import s3_for_task
from driftloop.config.settings import Settings

# the schedule is read when the file is parsed (DRIFTLOOP_LABELING_CRON)
SETTINGS = Settings.from_env()


@dag(
    dag_id="labeling_queue",
    schedule=CronTriggerTimetable(SETTINGS.labeling_cron, timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # a store error (S3, MLflow, the drift history) or a day not served yet is retried; bad
    # input (a broken log, a bad day) fails at once (AirflowFailException)
    default_args={
        "owner": "ml-platform",
        "retries": 3,
        "retry_delay": timedelta(minutes=10),
        "on_failure_callback": task_failure_notifier(),
    },
    doc_md=__doc__,
    tags=["driftloop", "labeling"],
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="The served day to queue (YYYY-MM-DD). Empty: the day before the "
            "run's date (what the daily schedule queues).",
        ),
    },
)
def labeling_queue():
    @task(doc_md="Picks the day's frames worth a label and writes the batch (write-once).")
    def queue(params=None, dag=None, dag_run=None, run_id=None, logical_date=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from driftloop.airflow.run_conf import check_conf_keys
        from driftloop.contracts.storage import WriteOnceViolation
        from driftloop.labeling.queue import queue_day
        from driftloop.labeling.sources import NotServed

        try:
            check_conf_keys(dag_run.conf, list(dag.params), dag.dag_id)
        except ValueError as err:
            raise AirflowFailException(str(err)) from err
        moment = logical_date or dag_run.run_after
        day = params["day"] or (moment - timedelta(days=1)).date().isoformat()
        s3, settings = s3_for_task()
        try:
            return queue_day(settings, day, run_id, s3=s3)
        except FileNotFoundError as err:  # no frames that day: nothing to label
            raise AirflowSkipException(str(err)) from err
        except NotServed:
            raise  # serving may still finish the day: retried
        except (ValueError, WriteOnceViolation) as err:  # bad input: no retry fixes it
            raise AirflowFailException(str(err)) from err

    queue()


labeling_queue()
