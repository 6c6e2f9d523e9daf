"""What a drift check publishes: the Evidently report, the MLflow run, the Pushgateway metrics."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from driftloop.config.settings import Settings
from driftloop.contracts.storage import dumps_canonical, get_bytes_uri, get_json_uri, put_bytes
from driftloop.drift.run import report_prefix


def render_evidently(
    s3,
    settings: Settings,
    reference: Mapping[str, Any],
    statistics: Mapping[str, Any],
    decision: Mapping[str, Any],
    run_id: str,
) -> dict[str, Any]:
    """The Evidently report of the bounded samples, showing the decision's verdict per feature
    (so it names the columns ``decide`` named, and its headline is the severity)."""
    from driftloop.config.drift_policy import parse_policy
    from driftloop.drift.reference import load_binning, load_sample
    from driftloop.drift.report import column_verdicts, evidently_report, with_embedding_components

    policy = parse_policy(decision["policy"], source=f"policy of the decision of run {run_id}")
    binning = load_binning(s3, reference["binning_uri"])
    frames = [
        with_embedding_components(load_sample(s3, uri).to_pandas(), binning)
        for uri in (reference["sample_uri"], statistics["current_sample_uri"])
    ]
    window = decision["window"]
    report = evidently_report(
        *frames,
        verdicts=column_verdicts(decision, policy),
        title=f"Drift in the window {window['start']}..{window['end']}: {decision['severity']}",
    )
    prefix = report_prefix(run_id)
    html_uri = put_bytes(
        s3, settings.bucket, prefix + "evidently.html", report.html.encode(), "text/html"
    )
    json_uri = put_bytes(
        s3, settings.bucket, prefix + "evidently.json", report.raw_json.encode(), "application/json"
    )
    summary_uri = put_bytes(
        s3,
        settings.bucket,
        prefix + "evidently_summary.json",
        dumps_canonical(report.summary),
        "application/json",
    )
    return {
        "html_uri": html_uri,
        "json_uri": json_uri,
        "summary_uri": summary_uri,
        "drifted_columns": report.summary["drifted_columns"],
        "dataset_drift": report.summary["dataset_drift"],
    }


#: where the Evidently HTML report is logged in a drift check's MLflow run
REPORT_ARTIFACT = "evidently/evidently.html"


def log_to_mlflow(
    s3, settings: Settings, decision: Mapping[str, Any], report: Mapping[str, Any], run_id: str
) -> dict[str, Any]:
    from driftloop.airflow.links import mlflow_artifact_url, mlflow_run_url
    from driftloop.drift import history
    from driftloop.drift.tracking import log_drift_check

    if not settings.mlflow_tracking_uri:
        raise ValueError("DRIFTLOOP_MLFLOW_TRACKING_URI (or MLFLOW_TRACKING_URI) is not set")
    statistics = get_json_uri(s3, decision["statistics_uri"])
    artifacts = {
        "decision.json": dumps_canonical(decision),
        "statistics.json": dumps_canonical(statistics),
    }
    artifacts[REPORT_ARTIFACT] = get_bytes_uri(s3, report["html_uri"])
    artifacts["evidently/evidently.json"] = get_bytes_uri(s3, report["json_uri"])
    params = {
        "window_start": decision["window"]["start"],
        "window_end": decision["window"]["end"],
        "reference_kind": decision["reference"]["kind"],
        "reference_id": decision["reference"]["reference_id"],
        "policy_version": decision["policy_version"],
        "current_rows": statistics["current"]["rows"],
        "reference_rows": statistics["reference"]["rows"],
    }
    metrics = dict(statistics["metrics"])
    metrics["severity_level"] = float({"none": 0, "warn": 1, "critical": 2}[decision["severity"]])
    metrics["drifted_features"] = float(len(decision["drifted_features"]))
    tags = {
        "severity": decision["severity"],
        "drifted_features": ",".join(decision["drifted_features"]) or "-",
        "quarantined_days": ",".join(q["day"] for q in decision["quarantined"]) or "-",
    }
    exp_id, mlflow_run_id = log_drift_check(
        settings.mlflow_tracking_uri,
        settings.drift_experiment,
        airflow_run_id=run_id,
        window_end=decision["window"]["end"],
        params=params,
        metrics=metrics,
        tags=tags,
        artifacts=artifacts,
        report_artifact=REPORT_ARTIFACT,
    )
    # the Evidently report as a browser opens it: the run's artifact page in the MLflow UI
    report_url = mlflow_artifact_url(
        settings.mlflow_tracking_uri, exp_id, mlflow_run_id, REPORT_ARTIFACT
    )
    engine = history.engine_for(settings.database_url)
    history.set_check_links(
        engine, run_id, mlflow_run_id=mlflow_run_id, report_uri=report["html_uri"]
    )
    return {
        "experiment_id": exp_id,
        "run_id": mlflow_run_id,
        "url": mlflow_run_url(settings.mlflow_tracking_uri, exp_id, mlflow_run_id),
        "report_url": report_url,
    }


def push_metrics(
    settings: Settings,
    decision: Mapping[str, Any],
    statistics_document: Mapping[str, Any],
    started_at: float | None,
) -> bool:
    from driftloop.drift import history
    from driftloop.drift.metrics import push_drift_metrics

    engine = history.engine_for(settings.database_url)
    stats = [
        {"feature": f["feature"], "method": method, "value": value}
        for f in statistics_document["features"]
        for method, value in f["statistics"].items()
        if method != "sample_rows"
    ]
    duration = max(time.time() - started_at, 0.0) if started_at else 0.0
    return push_drift_metrics(
        settings.pushgateway_url,
        statistics=stats,
        severity=decision["severity"],
        duration_s=duration,
        detected_totals=history.detections_by_severity(engine),
    )
