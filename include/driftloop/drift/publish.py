"""What a drift check publishes: the Evidently report, the MLflow run, the Pushgateway metrics.

The champion's performance (``performance.json`` of ``measure_performance`` and the verdict in
the decision) is published with it: :func:`performance_metrics` names the MLflow metrics
(``performance/<source>/map50_95/<camera>``, ``performance/estimate_mae``, ...); the
Pushgateway gets the same values as drift scores (``feature="performance/<camera>"``,
``method="<source>_map50_95"``)."""

from __future__ import annotations

import re
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
    # the report shows the inputs: its headline is the input drift's severity, and the
    # champion's accuracy verdict is named beside it when it alerts
    title = f"Drift in the window {window['start']}..{window['end']}: " + decision.get(
        "input_severity", decision["severity"]
    )
    if (decision.get("performance") or {}).get("level", "none") != "none":
        title += f"; accuracy drop: {decision['performance']['level']}"
    report = evidently_report(*frames, verdicts=column_verdicts(decision, policy), title=title)
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
    performance = _performance_document(s3, decision)
    if performance is not None:
        artifacts["performance.json"] = dumps_canonical(performance)
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
    metrics.update(performance_metrics(decision, performance))
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
    s3, settings: Settings, decision: Mapping[str, Any], started_at: float | None
) -> bool:
    """The check's drift statistics, severity and performance to the Pushgateway."""
    from driftloop.drift import history
    from driftloop.drift.metrics import push_drift_metrics

    engine = history.engine_for(settings.database_url)
    statistics_document = get_json_uri(s3, decision["statistics_uri"])
    stats = [
        {"feature": f["feature"], "method": method, "value": value}
        for f in statistics_document["features"]
        for method, value in f["statistics"].items()
        if method != "sample_rows"
    ]
    stats += performance_scores(performance_metrics(decision, _performance_document(s3, decision)))
    duration = max(time.time() - started_at, 0.0) if started_at else 0.0
    return push_drift_metrics(
        settings.pushgateway_url,
        statistics=stats,
        severity=decision["severity"],
        duration_s=duration,
        detected_totals=history.detections_by_severity(engine),
    )


def _performance_document(s3, decision: Mapping[str, Any]) -> dict[str, Any] | None:
    uri = decision.get("performance_uri")
    return None if uri is None else get_json_uri(s3, uri)


def _metric_part(value: Any) -> str:
    """A camera id as an MLflow metric name part (``*``: ``all``)."""
    text = "all" if value == "*" else str(value)
    return re.sub(r"[^\w.\-]", "_", text)


def performance_metrics(
    decision: Mapping[str, Any], document: Mapping[str, Any] | None
) -> dict[str, float]:
    """The MLflow metrics of the champion's performance: per source and camera the newest
    value of this check's new rows (``performance/measured/map50_95/all``,
    ``.../estimated/...``), ``performance/estimate_mae``, and the verdict's baseline,
    judged value, drop and level. Empty when performance was not measured."""
    out: dict[str, float] = {}
    newest: dict[tuple[str, str], tuple[str, float]] = {}
    for row in (document or {}).get("days") or []:
        if row.get("map50_95") is None:
            continue
        key = (str(row["source"]), _metric_part(row["camera"]))
        if key not in newest or str(row["day"]) >= newest[key][0]:
            newest[key] = (str(row["day"]), float(row["map50_95"]))
    for (source, camera), (_, value) in sorted(newest.items()):
        out[f"performance/{source}/map50_95/{camera}"] = value
    if (document or {}).get("estimate_mae") is not None:
        out["performance/estimate_mae"] = float(document["estimate_mae"])
    verdict = decision.get("performance") or {}
    for key in ("baseline", "measured", "drop"):
        if verdict.get(key) is not None:
            out[f"performance/{key}"] = float(verdict[key])
    if verdict:
        out["performance/level"] = float({"none": 0, "warn": 1, "critical": 2}[verdict["level"]])
    return out


def performance_scores(metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    """:func:`performance_metrics` as Pushgateway drift scores: ``performance/<source>/
    <metric>/<camera>`` → feature ``performance/<camera>``, method ``<source>_<metric>``;
    the rest → feature ``performance``, method the last part."""
    scores = []
    for name, value in metrics.items():
        parts = name.split("/")
        if len(parts) == 4:
            feature, method = f"performance/{parts[3]}", f"{parts[1]}_{parts[2]}"
        else:
            feature, method = "performance", parts[-1]
        scores.append({"feature": feature, "method": method, "value": value})
    return scores
