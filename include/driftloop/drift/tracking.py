"""MLflow: drift-check runs and the champion's reference profile.

Drift checks are runs in the ``drift-monitor`` experiment, one per Airflow DAG run (found
again by the ``airflow.run_id`` tag, so a re-run updates the same MLflow run), with every
statistic as a metric stamped at the window's end, so the MLflow UI charts drift over time.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
#: model-version tag holding the s3:// URI of the reference bundle of its training window
REFERENCE_TAG = "drift_reference_uri"
#: model-version tags of the new normal an operator accepted while the version was champion
#: (a drift event closed as ACCEPTED): the accepted window (``YYYY-MM-DD..YYYY-MM-DD``) and
#: the event. Drift is then measured against that window's data; the training reference
#: stays in REFERENCE_TAG.
ACCEPTED_WINDOW_TAG = "drift_reference_accepted_window"
ACCEPTED_EVENT_TAG = "drift_reference_accepted_event"
RUN_ID_TAG = "airflow.run_id"
#: MLflow 3's UI opens an experiment in the GenAI view (traces) unless this tag says it holds
#: model-training runs; the drift checks are runs with metrics and artifacts, not traces
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: run tag holding the browser link to the run's drift report
REPORT_URL_TAG = "drift_report_url"


def client(tracking_uri: str | None):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def champion_reference(tracking_uri: str | None, model_name: str) -> dict | None:
    """The champion version and its reference-bundle URI, or None when there is no champion
    (MLflow says there is no such registered model, or no version holds the alias) or the
    champion has no stored reference — the sliding reference is then the baseline. Any other
    MLflow error is raised: drift measured against a fallback baseline because MLflow answered
    500 once would be a verdict about the wrong thing.

    When an operator accepted a new normal while this version was champion
    (:data:`ACCEPTED_REFERENCE_TAG`), that bundle is the reference (``rule: accepted``, with
    its drift event); otherwise its training window's (``rule: champion``)."""
    from driftloop.promotion import registry

    if not tracking_uri:
        return None
    version = registry.version_with_alias(client(tracking_uri), model_name, CHAMPION_ALIAS)
    if version is None:
        log.info("%s has no %s: the sliding reference is the baseline", model_name, CHAMPION_ALIAS)
        return None
    uri = (version.tags or {}).get(REFERENCE_TAG)
    if not uri:
        log.warning(
            "champion %s v%s has no %s tag: falling back to a sliding reference",
            model_name,
            version.version,
            REFERENCE_TAG,
        )
        return None
    accepted = (version.tags or {}).get(ACCEPTED_WINDOW_TAG)
    if accepted:
        event_id = (version.tags or {}).get(ACCEPTED_EVENT_TAG)
        return {
            "model_version": str(version.version),
            "training_uri": uri,
            "rule": "accepted",
            "event_id": int(event_id) if event_id and event_id.isdigit() else None,
            "days": window_days(accepted, f"{model_name} v{version.version} {ACCEPTED_WINDOW_TAG}"),
            "reason": f"the new normal accepted by drift event {event_id} (window {accepted}) "
            f"while v{version.version} is champion; its training reference is set aside",
        }
    return {
        "model_version": str(version.version),
        "uri": uri,
        "rule": "champion",
        "reason": f"champion v{version.version}'s training window",
    }


def window_days(window: str, where: str) -> list[str]:
    """The days of ``start..end`` (a tag's value), oldest first; ValueError naming ``where``."""
    from datetime import date, timedelta

    try:
        start, end = (date.fromisoformat(part) for part in window.split(".."))
    except ValueError:
        raise ValueError(f"{where}: expected YYYY-MM-DD..YYYY-MM-DD, got {window!r}") from None
    if end < start:
        raise ValueError(f"{where}: the window {window!r} ends before it starts")
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def record_accepted_window(
    tracking_uri: str | None, model_name: str, version: str, window: str, event_id: int
) -> None:
    """Tag model ``version`` with the accepted new normal (see :func:`champion_reference`)."""
    from driftloop.promotion import registry

    registry.set_tags(
        client(tracking_uri),
        model_name,
        str(version),
        # the window last: it is what changes the baseline
        {ACCEPTED_EVENT_TAG: str(event_id), ACCEPTED_WINDOW_TAG: window},
    )


def experiment_id(mlflow_client, name: str) -> str:
    """The experiment ``name``, created when absent, tagged as a model-training experiment
    (an existing one without the tag gets it, so the MLflow UI opens its runs view)."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        return mlflow_client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    if (experiment.tags or {}).get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        mlflow_client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
        )
    return experiment.experiment_id


def log_drift_check(
    tracking_uri: str,
    experiment: str,
    *,
    airflow_run_id: str,
    window_end: str,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts: Mapping[str, bytes],
    report_artifact: str | None = None,
) -> tuple[str, str]:
    """Log (or re-log) one drift check; returns (experiment id, MLflow run id).

    ``report_artifact``: the artifact path of the drift report; its browser link (the MLflow
    UI's artifact page) is set as the run's ``drift_report_url`` tag."""
    from mlflow.entities import Metric, Param, RunTag

    from driftloop.airflow.links import mlflow_artifact_url

    mlflow_client = client(tracking_uri)
    exp_id = experiment_id(mlflow_client, experiment)
    existing = mlflow_client.search_runs(
        [exp_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{airflow_run_id}'", max_results=1
    )
    if existing:
        run_id = existing[0].info.run_id
        mlflow_client.update_run(run_id, status="RUNNING")
    else:
        run = mlflow_client.create_run(
            exp_id, run_name=f"drift {window_end}", tags={RUN_ID_TAG: airflow_run_id}
        )
        run_id = run.info.run_id
    stamp = int(datetime.fromisoformat(window_end).replace(tzinfo=UTC).timestamp() * 1000)
    logged_params = {} if existing else params  # MLflow params are immutable once logged
    run_tags = dict(tags)
    if report_artifact:
        run_tags[REPORT_URL_TAG] = mlflow_artifact_url(
            tracking_uri, exp_id, run_id, report_artifact
        )
    mlflow_client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in sorted(metrics.items())],
        params=[Param(k, str(v)) for k, v in sorted(logged_params.items())],
        tags=[RunTag(k, str(v)) for k, v in sorted(run_tags.items())],
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in artifacts.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        mlflow_client.log_artifacts(run_id, tmp)
    mlflow_client.set_terminated(run_id, "FINISHED")
    return exp_id, run_id
