"""The performance verdict: is the champion's accuracy on newly labeled days below its own
evaluation by more than the policy's drop?

:func:`judge` is pure: the ``performance_days`` rows of the champion (measured, and
label-free estimates), the champion's evaluation (``baseline``) and the policy's
``performance:`` section (:class:`driftloop.config.drift_policy.Performance`) in; a
:class:`PerformanceVerdict` out.

A **slice** is the whole day (camera ``*``) or one camera's frames of it. A slice's day is
judged when it has enough labeled frames (``min_frames``, ``min_camera_frames``; fewer:
ignored, and the verdict says so). It breaches a level when the upper bound of its bootstrap
CI is below ``baseline - drop`` of that level (``ci_rule: upper_below``): a day whose CI
still reaches the baseline's neighbourhood is noise, not a drop. Each slice's level is the
k-of-n rule (:func:`driftloop.drift.decision.hysteresis_level`) over its last n judged days,
newest first; a critical newest day alerts at once when ``break_skips_wait``. The verdict's
level is the worst slice's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from driftloop.config.drift_policy import Performance
from driftloop.drift.decision import RANK, hysteresis_level
from driftloop.performance.tables import ALL_CAMERAS, PERFORMANCE_SOURCES

MEASURED, ESTIMATED = PERFORMANCE_SOURCES


@dataclass(frozen=True)
class SliceVerdict:
    """One camera slice (or ``*``): its judged days, newest first, and its k-of-n level."""

    camera: str
    level: str
    breaches: dict[str, int]
    days: list[dict[str, Any]]  # newest first: day, source, n_frames, value, low, high, level
    broke: bool = False

    @property
    def newest(self) -> dict[str, Any]:
        return self.days[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "level": self.level,
            "breaches": dict(self.breaches),
            "broke": self.broke,
            "days": [dict(d) for d in self.days],
        }


@dataclass(frozen=True)
class PerformanceVerdict:
    level: str  # none | warn | critical (the drift decision's levels)
    metric: str
    baseline: float | None
    measured: float | None  # the worst slice's newest judged value
    drop: float | None  # baseline - measured
    reason: str
    camera: str | None = None  # the worst slice
    breaching_days: list[str] = field(default_factory=list)  # of the worst slice
    breaching_cameras: list[str] = field(default_factory=list)  # every slice that alerts
    k: int = 0
    n: int = 0
    breaches: dict[str, int] = field(default_factory=dict)  # of the worst slice
    slices: list[SliceVerdict] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)  # too few frames, no value
    estimated: dict[str, Any] | None = None  # the newest label-free estimate of the day
    model_version: str | None = None
    baseline_source: str | None = None

    @property
    def alerting(self) -> bool:
        return RANK[self.level] > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "metric": self.metric,
            "baseline": self.baseline,
            "baseline_source": self.baseline_source,
            "model_version": self.model_version,
            "measured": self.measured,
            "drop": self.drop,
            "camera": self.camera,
            "breaching_days": list(self.breaching_days),
            "breaching_cameras": list(self.breaching_cameras),
            "k": self.k,
            "n": self.n,
            "breaches": dict(self.breaches),
            "reason": self.reason,
            "slices": [s.to_dict() for s in self.slices],
            "ignored": [dict(i) for i in self.ignored],
            "estimated": None if self.estimated is None else dict(self.estimated),
        }


def day_level(bound: float | None, baseline: float, policy: Performance) -> str:
    """Level one judged day reaches: its bound (CI upper bound, or value) below the baseline
    minus a level's drop. No bound (an estimate without a CI): it cannot breach."""
    if bound is None:
        return "none"
    if bound < baseline - policy.drop_critical:
        return "critical"
    if bound < baseline - policy.drop_warning:
        return "warn"
    return "none"


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _candidates(
    series: Iterable[Mapping[str, Any]], policy: Performance, as_of: date | None
) -> tuple[dict[tuple[str, date], dict[str, Any]], list[dict[str, Any]]]:
    """The row judged per (camera, day) — measured first, an estimate only when the policy
    lets estimates alert and the day has no measurement — and the rows ignored, with why."""
    earliest = None if as_of is None else as_of - timedelta(days=policy.lookback_days - 1)
    chosen: dict[tuple[str, date], dict[str, Any]] = {}
    ignored: list[dict[str, Any]] = []
    for row in series:
        day = _day(row["day"])
        if (as_of is not None and day > as_of) or (earliest is not None and day < earliest):
            continue
        source = row["source"]
        if source not in PERFORMANCE_SOURCES:
            raise ValueError(f"performance row of {day}: unknown source {source!r}")
        if source == ESTIMATED and not policy.estimates_alert:
            continue
        camera = str(row["camera"])
        least = policy.min_frames if camera == ALL_CAMERAS else policy.min_camera_frames
        value = _float(row.get(policy.metric))
        note = {"day": day.isoformat(), "camera": camera, "source": source}
        n_frames = int(row.get("n_frames") or 0)
        if n_frames < least:
            ignored.append({**note, "n_frames": n_frames, "why": f"fewer than {least} frames"})
            continue
        if value is None:
            ignored.append({**note, "n_frames": n_frames, "why": f"no {policy.metric}"})
            continue
        key = (camera, day)
        if key in chosen and chosen[key]["source"] == MEASURED:
            continue
        chosen[key] = {
            "day": day.isoformat(),
            "source": source,
            "n_frames": n_frames,
            "value": value,
            "low": _float(row.get(f"{policy.metric}_low")),
            "high": _float(row.get(f"{policy.metric}_high")),
        }
    return chosen, ignored


def _judge_slice(
    camera: str, days: list[dict[str, Any]], baseline: float, policy: Performance
) -> SliceVerdict:
    days = sorted(days, key=lambda d: d["day"], reverse=True)[: policy.hysteresis.n]
    for d in days:
        bound = d["high"] if policy.ci_rule == "upper_below" else d["value"]
        d["level"] = day_level(bound, baseline, policy)
    level, breaches = hysteresis_level([d["level"] for d in days], policy.hysteresis.k)
    broke = policy.hysteresis.break_skips_wait and days[0]["level"] == "critical"
    if broke:
        level = "critical"
    return SliceVerdict(camera, level, breaches, days, bool(broke))


def _newest_estimate(series: Iterable[Mapping[str, Any]], as_of: date | None) -> dict | None:
    rows = [
        r
        for r in series
        if r["source"] == ESTIMATED
        and str(r["camera"]) == ALL_CAMERAS
        and (as_of is None or _day(r["day"]) <= as_of)
    ]
    if not rows:
        return None
    row = max(rows, key=lambda r: _day(r["day"]))
    return {
        "day": _day(row["day"]).isoformat(),
        "map50_95": _float(row.get("map50_95")),
        "n_frames": int(row.get("n_frames") or 0),
    }


def judge(
    series: Sequence[Mapping[str, Any]],
    baseline: Mapping[str, Any] | None,
    policy: Performance,
    *,
    as_of: date | None = None,
    model_version: str | None = None,
) -> PerformanceVerdict:
    """The performance verdict of the champion's ``series`` (``performance_days`` rows: day,
    source, camera, n_frames, map50, map50_95, map50_95_low, map50_95_high) against its own
    evaluation ``baseline`` (``{"map50", "map50_95", "source"}``; None: no champion or no
    evaluation, nothing to judge). ``as_of``: the check's last day; only rows of the
    ``lookback_days`` ending then count (a backfill never looks into its future)."""
    metric = policy.metric
    base = None if baseline is None else _float(baseline.get(metric))
    common = {
        "metric": metric,
        "k": policy.hysteresis.k,
        "n": policy.hysteresis.n,
        "model_version": model_version,
        "baseline_source": None if baseline is None else baseline.get("source"),
        "estimated": _newest_estimate(series, as_of),
    }
    if base is None:
        why = "no champion" if model_version is None else f"champion v{model_version}"
        return PerformanceVerdict(
            "none",
            baseline=None,
            measured=None,
            drop=None,
            reason=f"performance not judged: {why} has no evaluated {metric} to compare with",
            **common,
        )
    chosen, ignored = _candidates(series, policy, as_of)
    by_camera: dict[str, list[dict[str, Any]]] = {}
    for (camera, _), row in chosen.items():
        by_camera.setdefault(camera, []).append(row)
    slices = [_judge_slice(c, by_camera[c], base, policy) for c in sorted(by_camera)]
    ignored_note = _ignored_note(ignored)
    if not slices:
        return PerformanceVerdict(
            "none",
            baseline=base,
            measured=None,
            drop=None,
            reason=f"performance not judged: no labeled day with enough frames in the "
            f"{policy.lookback_days} days to the window's end{ignored_note}",
            ignored=ignored,
            **common,
        )
    # the worst slice: highest level, then the largest drop on its newest day, then '*'
    worst = max(
        slices,
        key=lambda s: (RANK[s.level], base - s.newest["value"], s.camera == ALL_CAMERAS),
    )
    measured = worst.newest["value"]
    alerting = [s for s in slices if RANK[s.level] > 0]
    verdict = PerformanceVerdict(
        worst.level,
        baseline=base,
        measured=measured,
        drop=base - measured,
        reason="",
        camera=worst.camera,
        breaching_days=[d["day"] for d in worst.days if RANK[d["level"]] > 0],
        breaching_cameras=[s.camera for s in alerting],
        breaches=dict(worst.breaches),
        slices=slices,
        ignored=ignored,
        **common,
    )
    return _with_reason(verdict, worst, policy, ignored_note)


def _ignored_note(ignored: Sequence[Mapping[str, Any]]) -> str:
    if not ignored:
        return ""
    named = ", ".join(f"{i['day']} camera {i['camera']} ({i['why']})" for i in ignored[:5])
    more = f" and {len(ignored) - 5} more" if len(ignored) > 5 else ""
    return f"; ignored: {named}{more}"


def _slice_name(camera: str) -> str:
    return "all cameras" if camera == ALL_CAMERAS else f"camera {camera}"


def _with_reason(
    verdict: PerformanceVerdict, worst: SliceVerdict, policy: Performance, ignored_note: str
) -> PerformanceVerdict:
    newest = worst.newest
    ci = (
        f" (CI {newest['low']:.3f}–{newest['high']:.3f})"
        if newest["low"] is not None and newest["high"] is not None
        else ""
    )
    what = (
        f"{verdict.metric} {newest['value']:.3f}{ci} on {newest['day']} ({_slice_name(worst.camera)}, "
        f"{newest['n_frames']} frames) vs the champion's {verdict.baseline:.3f}"
    )
    breached = [d["day"] for d in worst.days if RANK[d["level"]] > 0]
    if verdict.level == "none" and breached:
        reason = (
            f"no alert yet: {len(breached)} of the last {len(worst.days)} judged days breached "
            f"({', '.join(breached)}), {policy.hysteresis.k} needed; worst: {what}"
        )
    elif verdict.level == "none":
        judged = sum(len(s.days) for s in verdict.slices)
        reason = (
            f"no drop beyond {policy.drop_warning:.3f} that the CI confirms on "
            f"{judged} judged day slice(s); worst: {what}"
        )
    else:
        drop = policy.drop_critical if verdict.level == "critical" else policy.drop_warning
        how = (
            "critical on the newest judged day: no wait"
            if worst.broke
            else f"{worst.breaches[verdict.level]} of the last {len(worst.days)} judged days"
        )
        others = [c for c in verdict.breaching_cameras if c != worst.camera]
        also = f"; also {', '.join(_slice_name(c) for c in others)}" if others else ""
        reason = (
            f"{verdict.level} drop of {verdict.drop:.3f} (> {drop:.3f}): {what}; breached on "
            f"{', '.join(verdict.breaching_days)} ({how}){also}"
        )
    return replace(verdict, reason=reason + ignored_note)


def merge_rows(
    stored: Iterable[Mapping[str, Any]], fresh: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The stored ``performance_days`` rows with this check's fresh ones (its
    ``performance.json`` days) in place of the same (day, camera, source)."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in [*stored, *fresh]:
        key = (_day(row["day"]).isoformat(), str(row["camera"]), str(row["source"]))
        merged[key] = dict(row)
    return [merged[k] for k in sorted(merged)]
