"""The performance verdict: a day breaches only when its CI's upper bound is below the
champion's evaluation minus the drop; k-of-n per camera slice; too-few-frames days ignored."""

from __future__ import annotations

from datetime import date

import pytest

from driftloop.config.drift_policy import Performance, PerformanceHysteresis
from driftloop.performance.verdict import day_level, judge, merge_rows

BASELINE = {"map50": 0.85, "map50_95": 0.52, "source": "gate evaluation of v3"}
POLICY = Performance()  # drop 0.03 warn / 0.06 critical, k=2 of n=3, min 50 / 30 frames


def row(day, value, *, camera="*", n=200, half_ci=0.01, source="measured", ci=True):
    return {
        "day": day,
        "source": source,
        "camera": camera,
        "n_frames": n,
        "map50": None,
        "map50_95": value,
        "map50_95_low": value - half_ci if ci else None,
        "map50_95_high": value + half_ci if ci else None,
    }


def test_day_level_uses_the_bound_against_baseline_minus_drop():
    assert day_level(0.50, 0.52, POLICY) == "none"  # 2 points: less than the 3-point drop
    assert day_level(0.48, 0.52, POLICY) == "warn"
    assert day_level(0.45, 0.52, POLICY) == "critical"
    assert day_level(None, 0.52, POLICY) == "none"  # no CI: cannot breach


def test_a_single_warning_day_waits_for_k_of_n():
    verdict = judge([row("2026-11-10", 0.47)], BASELINE, POLICY)
    assert verdict.level == "none"
    assert verdict.breaches == {"warn": 1, "critical": 0}
    assert verdict.measured == pytest.approx(0.47)
    assert verdict.drop == pytest.approx(0.05)
    assert (verdict.k, verdict.n) == (2, 3)
    assert verdict.reason.startswith(
        "no alert yet: 1 of the last 1 judged days breached (2026-11-10), 2 needed"
    )


def test_two_of_three_warning_days_warn_and_name_the_days():
    series = [row("2026-11-08", 0.51), row("2026-11-09", 0.47), row("2026-11-10", 0.475)]
    verdict = judge(series, BASELINE, POLICY)
    assert verdict.level == "warn"
    assert verdict.breaching_days == ["2026-11-10", "2026-11-09"]
    assert verdict.breaches == {"warn": 2, "critical": 0}
    assert verdict.camera == "*"
    assert "warn drop of 0.045" in verdict.reason
    assert "2 of the last 3 judged days" in verdict.reason
    assert "2026-11-10" in verdict.reason


def test_a_wide_ci_is_noise_even_when_the_point_is_far_below():
    # the point is 7 points down, but the CI reaches back to 0.50: not confirmed
    series = [row("2026-11-09", 0.45, half_ci=0.05), row("2026-11-10", 0.45, half_ci=0.05)]
    assert judge(series, BASELINE, POLICY).level == "none"
    point = POLICY.model_copy(update={"ci_rule": "point"})
    assert judge(series, BASELINE, point).level == "critical"


def test_a_critical_newest_day_alerts_at_once_unless_the_policy_waits():
    series = [row("2026-11-10", 0.40)]
    verdict = judge(series, BASELINE, POLICY)
    assert verdict.level == "critical"
    assert verdict.slices[0].broke
    assert "critical on the newest judged day" in verdict.reason
    waiting = POLICY.model_copy(
        update={"hysteresis": PerformanceHysteresis(k=2, n=3, break_skips_wait=False)}
    )
    assert judge(series, BASELINE, waiting).level == "none"


def test_a_camera_slice_can_alert_while_the_day_overall_does_not():
    series = []
    for day in ("2026-11-09", "2026-11-10"):
        series += [
            row(day, 0.51, n=300),
            row(day, 0.53, camera="cam_1", n=150),
            row(day, 0.47, camera="cam_2", n=150),
        ]
    verdict = judge(series, BASELINE, POLICY)
    assert verdict.level == "warn"
    assert verdict.camera == "cam_2"
    assert verdict.breaching_cameras == ["cam_2"]
    assert verdict.measured == pytest.approx(0.47)
    assert {s.camera: s.level for s in verdict.slices} == {
        "*": "none",
        "cam_1": "none",
        "cam_2": "warn",
    }
    assert "camera cam_2" in verdict.reason


def test_days_with_too_few_frames_are_ignored_and_said_so():
    series = [
        row("2026-11-09", 0.40, n=49),  # one frame short of min_frames
        row("2026-11-10", 0.40, camera="cam_3", n=29),  # short of min_camera_frames
        row("2026-11-10", 0.51, n=120),
    ]
    verdict = judge(series, BASELINE, POLICY)
    assert verdict.level == "none"
    assert [(i["day"], i["camera"], i["n_frames"]) for i in verdict.ignored] == [
        ("2026-11-09", "*", 49),
        ("2026-11-10", "cam_3", 29),
    ]
    assert "ignored: 2026-11-09 camera * (fewer than 50 frames)" in verdict.reason
    assert "camera cam_3 (fewer than 30 frames)" in verdict.reason


def test_nothing_judged_without_enough_frames_says_so():
    verdict = judge([row("2026-11-10", 0.30, n=10)], BASELINE, POLICY)
    assert verdict.level == "none"
    assert verdict.measured is None
    assert verdict.reason.startswith("performance not judged: no labeled day with enough frames")


def test_no_baseline_means_not_judged():
    verdict = judge([row("2026-11-10", 0.30)], None, POLICY)
    assert verdict.level == "none"
    assert "no champion" in verdict.reason
    assert judge([], {"map50_95": None}, POLICY, model_version="3").reason.startswith(
        "performance not judged: champion v3"
    )


def test_estimates_are_reported_but_only_alert_when_the_policy_says():
    estimate = row("2026-11-10", 0.40, source="estimated", ci=False)
    verdict = judge([estimate], BASELINE, POLICY)
    assert verdict.level == "none"
    assert verdict.estimated == {"day": "2026-11-10", "map50_95": 0.40, "n_frames": 200}
    alerting = POLICY.model_copy(update={"estimates_alert": True})
    # an estimate without a CI cannot breach under upper_below ...
    assert judge([estimate], BASELINE, alerting).level == "none"
    # ... it can when judged by its value
    point = alerting.model_copy(update={"ci_rule": "point"})
    assert judge([estimate], BASELINE, point).level == "critical"
    # a measurement of the same day wins over the estimate
    both = [estimate, row("2026-11-10", 0.51)]
    assert judge(both, BASELINE, point).level == "none"


def test_only_the_lookback_to_the_check_day_counts():
    series = [row("2026-10-01", 0.40), row("2026-11-20", 0.40), row("2026-11-10", 0.51)]
    verdict = judge(series, BASELINE, POLICY, as_of=date(2026, 11, 10))
    assert verdict.level == "none"
    assert [d["day"] for d in verdict.slices[0].days] == ["2026-11-10"]


def test_only_the_last_n_judged_days_count():
    older = [row(f"2026-11-0{d}", 0.47) for d in (1, 2, 3)]
    recent = [row(f"2026-11-0{d}", 0.51) for d in (4, 5, 6)]
    assert judge(older + recent, BASELINE, POLICY).level == "none"


def test_to_dict_is_json_safe_and_complete():
    import json

    verdict = judge([row("2026-11-09", 0.47), row("2026-11-10", 0.47)], BASELINE, POLICY)
    document = json.loads(json.dumps(verdict.to_dict()))
    assert document["level"] == "warn"
    assert document["baseline"] == 0.52
    assert document["baseline_source"] == "gate evaluation of v3"
    assert document["slices"][0]["days"][0]["level"] == "warn"
    assert document["breaches"] == {"warn": 2, "critical": 0}


def test_unknown_source_is_an_error_naming_the_day():
    with pytest.raises(ValueError, match="2026-11-10: unknown source 'guessed'"):
        judge([row("2026-11-10", 0.5, source="guessed")], BASELINE, POLICY)


def test_merge_rows_lets_the_fresh_rows_replace_the_stored_ones():
    stored = [row("2026-11-09", 0.5), row("2026-11-10", 0.4)]
    fresh = [row("2026-11-10", 0.45), row("2026-11-10", 0.44, camera="cam_1")]
    merged = merge_rows(stored, fresh)
    assert [(r["day"], r["camera"], r["map50_95"]) for r in merged] == [
        ("2026-11-09", "*", 0.5),
        ("2026-11-10", "*", 0.45),
        ("2026-11-10", "cam_1", 0.44),
    ]
