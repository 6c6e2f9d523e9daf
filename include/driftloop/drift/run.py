"""The start of a drift_monitor run: what it checks (the window's end day, the effective
policy) and where its data is (windows, partitions, the reference).

Each DAG task is a thin wrapper around one function of the ``driftloop.drift`` step modules
(:mod:`.run`, :mod:`.validation`, :mod:`.profiling`, :mod:`.verdict`, :mod:`.publish`,
:mod:`.events`): it passes an S3 client (from its Airflow connection), the settings, the
policy, and the JSON documents earlier steps returned (URIs, never data), and returns a JSON
document for XCom.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from driftloop.config.drift_policy import Policy, drift_param_defaults, policy_overrides
from driftloop.config.settings import Settings
from driftloop.contracts.storage import REPORTS_PREFIX, list_partition
from driftloop.contracts.windows import drift_windows, parse_day, window_end_day

log = logging.getLogger(__name__)


def safe_run_id(run_id: str) -> str:
    """An Airflow run id as an S3 key segment (``manual__2026-…+00:00`` → ``manual__2026-…_00_00``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def report_prefix(run_id: str) -> str:
    return f"{REPORTS_PREFIX}/{safe_run_id(run_id)}/"


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
    from driftloop.airflow.params import APPROVAL_PARAM, check_approval_not_weakened
    from driftloop.airflow.run_conf import RunConfError, check_conf_keys, check_drift_params
    from driftloop.config.drift_policy import load_policy
    from driftloop.config.policies import PolicyError

    check_conf_keys(conf, declared_params, "drift_monitor")
    base = load_policy(settings.policy_path)  # a broken policy file is named as such
    check_drift_params(params, drift_param_defaults(base))
    check_approval_not_weakened(base.approval, params.get(APPROVAL_PARAM))
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


def announced_days(asset_event_extras: Sequence[Mapping[str, Any] | None]) -> list[str]:
    """The days that the ``driftloop_inference_logs`` Asset events of a run announced."""
    return sorted({str(extra["day"]) for extra in asset_event_extras if extra and extra.get("day")})


def choose_reference(
    engine, bucket: str, windows, champion: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The baseline of the check of ``windows`` and why (``rule``, ``reason``, ``event_id``).

    1. ``champion`` — the champion's training-window bundle (``uri``); or, when an operator
       accepted a new normal while it is champion, the accepted window (``rule: accepted``,
       ``days``; see :func:`driftloop.drift.tracking.champion_reference`).
    2. ``frozen`` — no champion, and a drift event opened against a sliding reference is
       still open: the reference bundle of the check that opened it (``uri``). Days from the
       drift on never slide into the reference while the drift is not dealt with, so a
       persistent drift keeps alerting until it is resolved, accepted or ignored.
    3. ``accepted`` — the window an operator accepted as the new normal (``days``), until the
       sliding reference starts on or after that window's first day.
    4. ``sliding`` — the days before the current window.

    A pinned bundle (``uri``) lists and validates no reference days; ``days`` are listed,
    validated and sketched like the sliding days (cached by content)."""
    from driftloop.contracts.storage import s3_uri
    from driftloop.drift import baselines
    from driftloop.drift.reference import BUNDLE_PREFIX
    from driftloop.drift.tracking import window_days

    if champion:
        return {"kind": "champion", **champion}
    end = parse_day(windows.current[-1])
    frozen = baselines.freezing_event(engine, end)
    if frozen is not None:
        opened = frozen["opened_window"]
        return {
            "kind": "sliding",
            "rule": "frozen",
            "event_id": frozen["event_id"],
            "uri": s3_uri(bucket, f"{BUNDLE_PREFIX}{frozen['reference_id']}/"),
            "reason": f"frozen by drift event {frozen['event_id']} ({frozen['status']}): the "
            f"reference of the check that opened it (window {opened['start']}..{opened['end']})",
        }
    accepted = baselines.accepted_sliding_reference(engine, end, parse_day(windows.reference[0]))
    if accepted is not None:
        window = f"{accepted['window']['start']}..{accepted['window']['end']}"
        return {
            "kind": "sliding",
            "rule": "accepted",
            "event_id": accepted["event_id"],
            "days": window_days(window, f"drift event {accepted['event_id']}'s accepted window"),
            "reason": f"the new normal accepted by drift event {accepted['event_id']} (window "
            f"{window}), until the sliding reference starts on or after "
            f"{accepted['window']['start']}",
        }
    return {
        "kind": "sliding",
        "rule": "sliding",
        "reason": f"the {len(windows.reference)} days before the current window",
    }


def reference_days_to_list(reference: Mapping[str, Any], windows) -> list[str]:
    """The reference days the planner lists and ``validate`` checks: none for a pinned
    bundle, the accepted window's, or the sliding window's."""
    if reference.get("uri"):
        return []
    if reference.get("rule", "sliding") == "sliding":
        return list(windows.reference)
    return list(reference["days"])


def plan_windows(s3, settings: Settings, end_day: str, policy: Policy) -> dict[str, Any]:
    """Which days make up each window, which partitions exist, and what the reference is
    (:func:`choose_reference`)."""
    from driftloop.drift import history
    from driftloop.drift.tracking import champion_reference

    windows = drift_windows(end_day, policy.length_days)
    champion = champion_reference(settings.mlflow_tracking_uri, settings.registered_model)
    engine = history.engine_for(settings.database_url)
    reference = choose_reference(engine, settings.bucket, windows, champion)
    reference_days = reference_days_to_list(reference, windows)
    if reference.get("rule", "champion") != "champion":
        log.info("reference: %s", reference["reason"])
    listed = {
        day: list_partition(s3, settings.bucket, day) for day in windows.current + reference_days
    }
    present = {day: p for day, p in listed.items() if p.keys}
    plan = {
        "end_day": end_day,
        "current_days": windows.current,
        "reference_days": reference_days,
        "reference": reference,
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
