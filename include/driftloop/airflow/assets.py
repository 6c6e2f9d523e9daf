"""Airflow Assets that connect the driftloop DAGs (imports only the Airflow SDK)."""

from __future__ import annotations

from airflow.sdk import Asset

#: a new inference-log partition landed: the serving side emits it after the day's ``_SUCCESS``
#: (``POST /api/v2/assets/events`` with ``extra={"day": "YYYY-MM-DD"}``); drift_monitor then
#: checks the window ending on the latest announced day
INFERENCE_LOGS = Asset(name="driftloop_inference_logs", uri="s3://driftloop/inference/")
#: drift confirmed by drift_monitor (after approval where the policy asks); retrain_detector listens
DRIFT_CONFIRMED = Asset(
    name="driftloop_drift_confirmed", uri="s3://driftloop/events/drift_confirmed"
)
