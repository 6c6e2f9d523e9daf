"""The steps of ``drift_monitor``, as plain functions of their inputs.

Each DAG task is a thin wrapper around one function here: it passes an S3 client (from its
Airflow connection), the settings, the policy, and the JSON documents earlier steps returned
(URIs, never data), and returns a JSON document for XCom.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from driftloop.config.settings import Settings
from driftloop.contracts.storage import (
    REPORTS_PREFIX,
    Partition,
    dumps_canonical,
    get_bytes_uri,
    get_json_uri,
    list_partition,
    put_bytes,
)
from driftloop.contracts.windows import drift_windows, parse_day, window_end_day
from driftloop.drift.decision import Decision, Policy, decide

log = logging.getLogger(__name__)


def safe_run_id(run_id: str) -> str:
    """An Airflow run id as an S3 key segment (``manual__2026-…+00:00`` → ``manual__2026-…_00_00``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def report_prefix(run_id: str) -> str:
    return f"{REPORTS_PREFIX}/{safe_run_id(run_id)}/"


# --- plan -------------------------------------------------------------------------------


def resolve_drift_run(
    settings: Settings,
    params: Mapping[str, Any],
    *,
    conf: Mapping[str, Any] | None,
    declared_params: Sequence[str],
    announced_days: Sequence[str],
    logical_date: datetime | None,
    run_after: datetime | None,
) -> dict[str, Any]:
    """The first step of every run, whatever started it: refuse what no retry can fix (unknown
    conf keys, Params that contradict each other or the policy), then fix the window's end day
    and the effective policy. Raises :class:`RunConfError` or :class:`PolicyError`."""
    from driftloop.airflow.run_conf import RunConfError, check_conf_keys, check_drift_params
    from driftloop.config.policies import PolicyError
    from driftloop.drift.decision import load_policy

    check_conf_keys(conf, declared_params, "drift_monitor")
    base = load_policy(settings.policy_path)  # a broken policy file is named as such
    check_drift_params(params, drift_param_defaults(base))
    overrides = policy_overrides(params)
    try:
        policy = load_policy(settings.policy_path, overrides)
    except PolicyError as err:
        names = ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if v is not None)
        raise RunConfError(f"the run's Params ({names}) make the policy invalid: {err}") from err
    try:
        end_day = window_end_day(
            params.get("end_date"),
            announced_days=announced_days,
            logical_date=logical_date,
            run_after=run_after,
        )
    except ValueError as err:
        raise RunConfError(str(err)) from err
    if params.get("end_date"):
        end_day_from = "end_date"
    elif announced_days:
        end_day_from = "asset_event"
    elif logical_date is not None:
        end_day_from = "logical_date"
    else:
        end_day_from = "run_after"
    log.info("window ends %s (from %s); policy %s", end_day, end_day_from, policy.version)
    return {
        "end_day": end_day,
        "end_day_from": end_day_from,
        "announced_days": sorted(announced_days),
        "policy": policy.to_dict(),
    }


def earlier_check_of_the_day(settings: Settings, end_day: str, run_id: str) -> str | None:
    """The run id of an earlier check of the window ending ``end_day``, if any.

    The cron run and the Asset-triggered run of the same day (the serving side announced it
    before 02:30) would otherwise both check it, open two drift events and start two
    retrainings for one drift."""
    from driftloop.drift import history

    engine = history.engine_for(settings.database_url)
    return history.check_of_window_end(engine, parse_day(end_day), exclude_run_id=run_id)


def drift_param_defaults(policy: Policy) -> dict[str, Any]:
    """What an empty Param of drift_monitor keeps: the policy's hysteresis and the strictest
    PSI defaults of the feature kinds that the ``psi_*`` Params override."""
    kinds = [policy.defaults[kind] for kind in ("numeric", "categorical")]
    return {
        "k": policy.k,
        "n": policy.n,
        "psi_warn": max(float(kind["warn"]) for kind in kinds),
        "psi_critical": min(float(kind["critical"]) for kind in kinds),
    }


def announced_days(asset_event_extras: Sequence[Mapping[str, Any] | None]) -> list[str]:
    """The days that the ``driftloop_inference_logs`` Asset events of a run announced."""
    return sorted({str(extra["day"]) for extra in asset_event_extras if extra and extra.get("day")})


def plan_windows(s3, settings: Settings, end_day: str, policy: Policy) -> dict[str, Any]:
    """Which days make up each window, which partitions exist, and what the reference is."""
    from driftloop.drift.tracking import champion_reference

    windows = drift_windows(end_day, policy.length_days)
    champion = champion_reference(settings.mlflow_tracking_uri, settings.registered_model)
    reference_days = [] if champion else windows.reference
    listed = {
        day: list_partition(s3, settings.bucket, day) for day in windows.current + reference_days
    }
    present = {day: p for day, p in listed.items() if p.keys}
    plan = {
        "end_day": end_day,
        "current_days": windows.current,
        "reference_days": reference_days,
        "reference": {"kind": "champion", **champion} if champion else {"kind": "sliding"},
        "partitions": {
            "current": [present[d].to_dict() for d in windows.current if d in present],
            "reference": [present[d].to_dict() for d in reference_days if d in present],
        },
        "missing_days": {
            "current": [d for d in windows.current if d not in present],
            "reference": [d for d in reference_days if d not in present],
        },
    }
    for window, days in plan["missing_days"].items():
        if days:
            log.warning(
                "%s window: no inference data for %d day(s): %s", window, len(days), ", ".join(days)
            )
    return plan


# --- validate ---------------------------------------------------------------------------


def validate_windows(
    s3, settings: Settings, plan: Mapping[str, Any], policy: Policy
) -> dict[str, Any]:
    """Validate every partition, quarantine the failures, fail if too few days are valid."""
    from driftloop.drift.validation import quarantine_partition, summarize, validate_partitions

    result: dict[str, Any] = {"valid": {}, "quarantined": [], "missing_days": plan["missing_days"]}
    summaries = []
    for window in ("current", "reference"):
        partitions = [Partition.from_dict(p) for p in plan["partitions"][window]]
        expected = plan[f"{window}_days"]
        verdicts = validate_partitions(s3, settings.bucket, partitions)
        by_day = {p.day: p for p in partitions}
        for verdict in verdicts:
            if not verdict.valid:
                uris = quarantine_partition(s3, settings.bucket, verdict, by_day[verdict.day])
                result["quarantined"].append(
                    {"window": window, "day": verdict.day, "reasons": verdict.reasons, "uris": uris}
                )
                log.warning("quarantined %s: %s", verdict.day, "; ".join(verdict.reasons))
        result["valid"][window] = [by_day[v.day].to_dict() for v in verdicts if v.valid]
        if expected:
            summaries.append((window, summarize(verdicts, expected, policy.min_valid_share)))
    for window, summary in summaries:
        summary.raise_if_insufficient(window)
    return result


# --- reference and profiles -------------------------------------------------------------


def resolve_reference(
    s3, settings: Settings, plan: Mapping[str, Any], validated: Mapping[str, Any], policy: Policy
) -> dict[str, Any]:
    from driftloop.drift.reference import ReferenceBundle, build_reference_bundle

    reference = plan["reference"]
    if reference["kind"] == "champion":
        bundle = ReferenceBundle.from_uri(reference["uri"])
        return {"kind": "champion", "model_version": reference["model_version"], **bundle.to_dict()}
    partitions = [Partition.from_dict(p) for p in validated["valid"]["reference"]]
    bundle = build_reference_bundle(s3, settings.bucket, partitions, policy.sample_size)
    return {"kind": "sliding", "days": [p.day for p in partitions], **bundle.to_dict()}


def profile_current_partition(
    s3,
    settings: Settings,
    partition: Mapping[str, Any],
    reference: Mapping[str, Any],
    policy: Policy,
) -> dict[str, Any]:
    from driftloop.drift.reference import load_binning, profile_partition

    binning = load_binning(s3, reference["binning_uri"])
    ref = profile_partition(
        s3, settings.bucket, Partition.from_dict(partition), binning, policy.sample_size
    )
    return ref.to_dict()


# --- statistics -------------------------------------------------------------------------


def compute_statistics(
    s3,
    settings: Settings,
    reference: Mapping[str, Any],
    profiles: Sequence[Mapping[str, Any]],
    policy: Policy,
    run_id: str,
) -> dict[str, Any]:
    from driftloop.drift.compare import compare_windows, flat_metrics
    from driftloop.drift.reference import load_profile, load_sample, merge_window
    from driftloop.drift.sketch import table_to_parquet_bytes

    profiles = sorted(profiles, key=lambda r: r["day"])
    current_profile, current_sample = merge_window(s3, profiles, policy.sample_size)
    reference_profile = load_profile(s3, reference["profile_uri"])
    reference_sample = load_sample(s3, reference["sample_uri"])
    comparisons = compare_windows(
        reference_profile,
        current_profile,
        reference_sample,
        current_sample,
        mmd_sample_size=policy.mmd_sample_size,
        mmd_permutations=policy.mmd_permutations,
    )
    prefix = report_prefix(run_id)
    document = {
        "run_id": run_id,
        "reference": {
            "kind": reference["kind"],
            "reference_id": reference["reference_id"],
            "rows": reference_profile.rows,
            "days": reference_profile.days,
        },
        "current": {"rows": current_profile.rows, "days": current_profile.days},
        "features": [c.to_dict() for c in comparisons],
        "metrics": flat_metrics(comparisons),
    }
    statistics_uri = put_bytes(
        s3,
        settings.bucket,
        prefix + "statistics.json",
        dumps_canonical(document),
        "application/json",
    )
    sample_uri = put_bytes(
        s3,
        settings.bucket,
        prefix + "current_sample.parquet",
        table_to_parquet_bytes(current_sample),
    )
    put_bytes(
        s3,
        settings.bucket,
        prefix + "current_profile.json",
        dumps_canonical(current_profile.to_dict()),
        "application/json",
    )
    return {
        "statistics_uri": statistics_uri,
        "current_sample_uri": sample_uri,
        "current_rows": current_profile.rows,
        "reference_rows": reference_profile.rows,
    }


def render_evidently(
    s3, settings: Settings, reference: Mapping[str, Any], statistics: Mapping[str, Any], run_id: str
) -> dict[str, Any]:
    from driftloop.drift.reference import load_sample
    from driftloop.drift.report import evidently_report

    reference_frame = load_sample(s3, reference["sample_uri"]).to_pandas()
    current_frame = load_sample(s3, statistics["current_sample_uri"]).to_pandas()
    report = evidently_report(
        reference_frame, current_frame, title=f"driftloop drift check {run_id}"
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
    return {"html_uri": html_uri, "json_uri": json_uri, "summary_uri": summary_uri}


# --- decision ---------------------------------------------------------------------------


def decide_and_record(
    s3,
    settings: Settings,
    *,
    plan: Mapping[str, Any],
    reference: Mapping[str, Any],
    statistics: Mapping[str, Any],
    report: Mapping[str, Any],
    validated: Mapping[str, Any],
    policy: Policy,
    run_id: str,
) -> dict[str, Any]:
    from driftloop.drift import history
    from driftloop.drift.compare import FeatureComparison

    document = get_json_uri(s3, statistics["statistics_uri"])
    comparisons = [FeatureComparison.from_dict(f) for f in document["features"]]
    engine = history.engine_for(settings.database_url)
    current_days = plan["current_days"]
    previous = history.previous_levels(
        engine, _day(current_days[-1]), exclude_run_id=run_id, limit=policy.n - 1
    )
    decision = decide(comparisons, policy, previous)
    history.record_check(
        engine,
        history.CheckRecord(
            run_id=run_id,
            window_start=_day(current_days[0]),
            window_end=_day(current_days[-1]),
            reference_kind=reference["kind"],
            reference_id=reference["reference_id"],
            severity=decision.severity,
            policy_version=policy.version,
            feature_levels=decision.feature_levels,
            drifted_features=decision.drifted_features,
            report_uri=report.get("html_uri"),
        ),
    )
    out = _decision_document(
        decision, plan, reference, validated, report, statistics, policy, run_id
    )
    out["decision_uri"] = put_bytes(
        s3,
        settings.bucket,
        report_prefix(run_id) + "decision.json",
        dumps_canonical(out),
        "application/json",
    )
    return out


def _day(value: str):
    from datetime import date

    return date.fromisoformat(value)


def _decision_document(
    decision: Decision, plan, reference, validated, report, statistics, policy: Policy, run_id: str
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "severity": decision.severity,
        "drifted_features": decision.drifted_features,
        "policy": policy.to_dict(),
        "policy_version": policy.version,
        "window": {"start": plan["current_days"][0], "end": plan["current_days"][-1]},
        "reference": {
            k: reference.get(k)
            for k in ("kind", "reference_id", "uri", "model_version", "days")
            if reference.get(k) is not None
        },
        "missing_days": plan["missing_days"],
        "quarantined": [
            {"day": q["day"], "window": q["window"], "reasons": q["reasons"]}
            for q in validated["quarantined"]
        ],
        "history_checks": decision.history_checks,
        "features": [f.to_dict() for f in decision.features],
        "report": dict(report),
        "statistics_uri": statistics["statistics_uri"],
    }


# --- recording --------------------------------------------------------------------------


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
        "report_uri": report["html_uri"],
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
    )
    engine = history.engine_for(settings.database_url)
    history.set_check_mlflow_run(engine, run_id, mlflow_run_id)
    return {
        "experiment_id": exp_id,
        "run_id": mlflow_run_id,
        "url": mlflow_run_url(settings.mlflow_tracking_uri, exp_id, mlflow_run_id),
        # the Evidently report as a browser opens it: the run's artifact page in the MLflow UI
        "report_url": mlflow_artifact_url(
            settings.mlflow_tracking_uri, exp_id, mlflow_run_id, REPORT_ARTIFACT
        ),
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


# --- routing and events -----------------------------------------------------------------

ROUTES = {"none": "no_drift", "warn": "notify_warning", "critical": "open_drift_event"}


def route_for_severity(severity: str) -> str:
    try:
        return ROUTES[severity]
    except KeyError:
        raise ValueError(
            f"unknown severity {severity!r}; expected one of {sorted(ROUTES)}"
        ) from None


def policy_overrides(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Policy overrides from the DAG's trigger Params (None means: keep the policy's value)."""
    params = params or {}
    overrides: dict[str, Any] = {}
    if params.get("window_days") is not None:
        overrides["windows"] = {"length_days": int(params["window_days"])}
    psi = {
        k: params[f"psi_{k}"] for k in ("warn", "critical") if params.get(f"psi_{k}") is not None
    }
    if psi:
        overrides["defaults"] = {kind: dict(psi) for kind in ("numeric", "categorical")}
    hysteresis = {
        k: int(params[f"hysteresis_{k}"])
        for k in ("k", "n")
        if params.get(f"hysteresis_{k}") is not None
    }
    if hysteresis:
        overrides["hysteresis"] = hysteresis
    if params.get("fdr_alpha") is not None:
        overrides["fdr_alpha"] = float(params["fdr_alpha"])
    if params.get("approval") is not None:
        overrides["approval"] = params["approval"]
    return overrides


def warning_summary(decision: Mapping[str, Any]) -> dict[str, Any]:
    features = [f for f in decision["features"] if f["alert_level"] != "none"]
    parts = [
        f"{f['feature']} {f['method']}={f['effect']:.3f} ({f['alert_level']})" for f in features
    ]
    return {
        "message": f"window {decision['window']['start']}..{decision['window']['end']}: "
        + ", ".join(parts),
        "features": [f["feature"] for f in features],
        "report": decision["report"].get("html_uri"),
    }


def open_drift_event(
    settings: Settings, decision: Mapping[str, Any], run_id: str
) -> dict[str, Any]:
    """Open the drift event of a critical check (idempotent per DAG run) and put it in the ledger.

    A sustained drift is critical day after day: while an event against the same baseline,
    from a window that overlaps this one, still waits for an answer or for its retraining, the
    check is attached to that event (``already_open``) instead of opening another one — one
    drift, one approval request, one retraining."""
    import hashlib
    from datetime import timedelta

    from driftloop.audit.ledger import Ledger
    from driftloop.drift import history

    engine = history.engine_for(settings.database_url)
    if history.event_of_run(engine, run_id) is None:
        window_end = parse_day(decision["window"]["end"])
        length = int(decision["policy"]["windows"]["length_days"])
        ongoing = history.ongoing_event(
            engine,
            decision["reference"]["kind"],
            decision["reference"]["reference_id"],
            window_end_since=window_end - timedelta(days=length - 1),
            exclude_run_id=run_id,
        )
        if ongoing is not None:
            log.warning(
                "critical drift in the window ending %s belongs to the ongoing drift event %d: "
                "no new event, approval or retraining",
                window_end,
                ongoing,
            )
            return {"event_id": ongoing, "already_open": True, "decision": dict(decision)}
    event_id = history.open_event(
        engine, run_id, decision["severity"], decision["drifted_features"]
    )
    Ledger(settings.database_url).append(
        "drift_event",
        actor="drift_monitor",
        subject=f"drift_event:{event_id}",
        payload={
            "status": "NEEDS_REVIEW",
            "severity": decision["severity"],
            "drifted_features": decision["drifted_features"],
            "window": decision["window"],
            "policy_version": decision["policy_version"],
            "decision_uri": decision["decision_uri"],
        },
        input_hashes={"decision": hashlib.sha256(dumps_canonical(decision)).hexdigest()},
        idempotency_key=f"drift_monitor/{run_id}/open_drift_event",
    )
    return {"event_id": event_id, "already_open": False, "decision": dict(decision)}


def record_event_answer(
    settings: Settings, event_id: int, status: str, answer: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Close a drift event with the operator's answer, or as decided by policy when none was asked."""
    from driftloop.drift import history

    if answer:
        user = answer.get("responded_by_user") or {}
        if isinstance(user, Mapping):
            actor = str(user.get("name") or user.get("id") or "unknown")
        else:
            actor = str(user)
        note = f"answered {answer.get('chosen_options')} at {answer.get('responded_at')}" + (
            " (timed out: default)" if answer.get("timedout") else ""
        )
    else:
        actor, note = "policy:auto", "approval not required by policy"
    from driftloop.audit.ledger import Ledger

    engine = history.engine_for(settings.database_url)
    history.set_event_status(engine, event_id, status, actor=actor, note=note)
    Ledger(settings.database_url).append(
        "approval",
        actor=actor,
        subject=f"drift_event:{event_id}",
        payload={"status": status, "note": note, "answer": dict(answer) if answer else None},
        idempotency_key=f"drift_event/{event_id}/answer",
    )
    return {"event_id": event_id, "status": status, "actor": actor, "note": note}
