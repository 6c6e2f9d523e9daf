"""Airflow Assets that connect the driftloop DAGs (imports only the Airflow SDK).

The Assets are named, without an ``s3://`` URI: an ``s3`` scheme makes Airflow run the Amazon
provider's URI normalizer at parse time, which imports the S3 hook and boto3 into every DAG
file (0.4 s of a 0.5 s parse), and the bucket is a setting, not a constant. Where the data
lives is the storage layout's business (:mod:`driftloop.contracts.storage`).
"""

from __future__ import annotations

from airflow.sdk import Asset

#: a new inference-log partition landed: the serving side emits it after the day's ``_SUCCESS``
#: (``POST /api/v2/assets/events`` with ``extra={"day": "YYYY-MM-DD"}``); drift_monitor then
#: checks the window ending on the latest announced day
INFERENCE_LOGS = Asset(name="driftloop_inference_logs")
#: a labeled day landed (``labeled/dt=D/_SUCCESS`` written last): ``labels_landed`` emits it
#: once per day, or a labeling pipeline posts it (``POST /api/v2/assets/events`` with
#: ``extra={"day": "YYYY-MM-DD", "frames": n}``; labels_landed adds ``days`` and
#: ``frames_per_day`` when it announces several); retrain_detector listens and trains once
#: enough labeled frames are new to the champion (promotion policy ``new_labels``)
LABELS = Asset(name="driftloop_labels")
#: drift confirmed by drift_monitor (after approval where the policy asks); retrain_detector listens
DRIFT_CONFIRMED = Asset(name="driftloop_drift_confirmed")
#: the ``champion`` alias moved (a promotion, a rollout's promotion, a rollback — manual or
#: automatic); rollout_guard listens (a new champion starts its guard period)
CHAMPION = Asset(name="driftloop_champion")
#: a rollout started or changed stage (the routing document ``rollout/routing.json`` changed);
#: rollout_guard listens
ROLLOUT = Asset(name="driftloop_rollout")
