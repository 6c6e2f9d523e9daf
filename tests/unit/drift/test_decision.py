"""Policy parsing, FDR, hysteresis and severity edges; windows; the drift history store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from driftloop.config.drift_policy import load_policy, parse_policy
from driftloop.config.policies import PolicyError
from driftloop.config.settings import DEFAULT_POLICY_PATH
from driftloop.contracts.windows import days_ending, drift_windows, window_end_day
from driftloop.drift import history
from driftloop.drift.compare import FeatureComparison
from driftloop.drift.decision import breach_level, decide, hysteresis_level


@pytest.fixture
def policy():
    return load_policy(DEFAULT_POLICY_PATH, {"hysteresis": {"k": 2, "n": 3}})


def numeric(feature, psi, p=1e-12):
    return FeatureComparison(feature, "numeric", "ks", p, {"psi": psi, "ks": 0.1})


def test_default_policy_loads_and_is_versioned():
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert policy.version
    assert "+override" not in policy.version
    assert policy.threshold("sharpness", "numeric").critical == 0.30
    assert policy.threshold("brightness", "numeric").method == "psi"
    assert policy.threshold("latency_ms", "numeric").alert is False


def test_overrides_mark_the_version(policy):
    assert policy.version.endswith("+override")
    assert (
        load_policy(DEFAULT_POLICY_PATH, {"hysteresis": None}).version.endswith("+override")
        is False
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"hysteresis": {"k": 4, "n": 3}}, "1 <= k <= n"),
        ({"fdr_alpha": 1.5}, "fdr_alpha"),
        ({"approval": "maybe"}, "approval"),
        ({"defaults": {"numeric": {"warn": 0.5, "critical": 0.2}}}, "exceeds critical"),
        ({"features": {"brightness": {"warn": "high"}}}, "brightness"),
    ],
)
def test_bad_policy_names_the_problem(override, message):
    with pytest.raises(PolicyError, match=message):
        load_policy(DEFAULT_POLICY_PATH, override)


def test_missing_key_is_named():
    with pytest.raises(PolicyError, match=r"hysteresis\.k"):
        parse_policy(
            {
                "version": "x",
                "windows": {"length_days": 14, "min_valid_share": 0.5},
                "sampling": {"sample_size": 1, "mmd_sample_size": 1, "mmd_permutations": 1},
                "fdr_alpha": 0.05,
                "hysteresis": {"n": 3},
                "approval": "none",
                "defaults": {},
            }
        )


def test_breach_level_edges(policy):
    t = policy.threshold("brightness", "numeric")
    assert breach_level(t.critical, 0.001, t, 0.05) == "critical"  # at the threshold counts
    assert breach_level(t.critical - 1e-9, 0.001, t, 0.05) == "warn"
    assert breach_level(t.warn, 0.001, t, 0.05) == "warn"
    assert breach_level(t.warn - 1e-9, 0.001, t, 0.05) == "none"
    assert breach_level(10.0, 0.05, t, 0.05) == "none"  # large effect, not significant


def test_hysteresis_k_of_n():
    assert hysteresis_level(["critical", "none", "none"], 2)[0] == "none"
    assert hysteresis_level(["critical", "none", "critical"], 2)[0] == "critical"
    assert hysteresis_level(["critical", "warn", "none"], 2) == ("warn", {"warn": 2, "critical": 1})
    assert hysteresis_level(["warn"], 1)[0] == "warn"


def test_fdr_turns_a_lone_marginal_p_value_off(policy):
    # 20 features: one with a large effect but p = 0.01; BH-adjusted it is 0.2 > alpha.
    comps = [numeric(f"f{i}", 0.01, p=0.9) for i in range(19)] + [
        numeric("brightness", 0.4, p=0.01)
    ]
    one = load_policy(DEFAULT_POLICY_PATH, {"hysteresis": {"k": 1, "n": 1}})
    decision = decide(comps, one)
    verdict = next(v for v in decision.features if v.feature == "brightness")
    assert verdict.q_value == pytest.approx(0.2)
    assert decision.severity == "none"
    alone = decide([numeric("brightness", 0.4, p=0.01)], one)
    assert alone.severity == "critical"


def test_severity_needs_k_of_n_checks(policy):
    comps = [numeric("brightness", 0.4), numeric("contrast", 0.005)]
    first = decide(comps, policy, [])
    assert first.severity == "none"
    assert first.feature_levels["brightness"] == "critical"
    second = decide(comps, policy, [first.feature_levels])
    assert second.severity == "critical"
    assert second.drifted_features == ["brightness"]
    # breaches older than the last n checks are forgotten
    old = decide(
        comps, policy, [{"brightness": "none"}, {"brightness": "none"}, {"brightness": "critical"}]
    )
    assert old.severity == "none"


def test_warn_when_only_warn_level_repeats(policy):
    comps = [numeric("brightness", 0.15)]
    assert decide(comps, policy, [{"brightness": "critical"}]).severity == "warn"


def test_non_alerting_feature_never_drives_severity(policy):
    decision = decide([numeric("latency_ms", 5.0)], policy, [{"latency_ms": "critical"}])
    assert decision.severity == "none"
    assert decision.features[0].alerting is False


def test_unknown_policy_method_is_named(policy):
    bad = load_policy(DEFAULT_POLICY_PATH, {"defaults": {"numeric": {"method": "hellinger"}}})
    with pytest.raises(PolicyError, match="hellinger"):
        decide([numeric("brightness", 0.4)], bad)


# --- windows ----------------------------------------------------------------------------


def test_window_end_day_rules():
    assert window_end_day("2026-03-05") == "2026-03-05"
    # the explicit Param wins over everything the run itself knows
    assert (
        window_end_day(
            "2026-03-05",
            announced_days=["2026-03-09"],
            logical_date=datetime(2026, 3, 10, tzinfo=UTC),
        )
        == "2026-03-05"
    )
    with pytest.raises(ValueError, match="end_date"):
        window_end_day("03/05/2026")


def test_cron_run_checks_the_day_before_its_trigger_time():
    # CronTriggerTimetable("30 2 * * *"): logical date == data interval end == 02:30 that day
    cron = datetime(2026, 11, 29, 2, 30, tzinfo=UTC)
    assert window_end_day(None, logical_date=cron, run_after=cron) == "2026-11-28"
    # at midnight exactly, too: the day before, never the day that just began
    assert window_end_day(None, logical_date=datetime(2026, 11, 29, tzinfo=UTC)) == "2026-11-28"


def test_runs_without_a_logical_date_use_run_after():
    # REST trigger with logical_date: null, in UTC whatever the client's zone
    run_after = datetime(2026, 11, 29, 1, 0, tzinfo=timezone(timedelta(hours=3)))
    assert window_end_day(None, run_after=run_after) == "2026-11-27"
    with pytest.raises(ValueError, match="logical date"):
        window_end_day(None)


def test_asset_triggered_run_checks_the_latest_announced_day():
    days = ["2026-11-27", "2026-11-28", "2026-11-26"]
    later = datetime(2026, 12, 5, tzinfo=UTC)
    assert window_end_day(None, announced_days=days, run_after=later) == "2026-11-28"
    with pytest.raises(ValueError, match="Asset event"):
        window_end_day(None, announced_days=["yesterday"])


def test_windows_are_adjacent_and_ordered():
    w = drift_windows("2026-03-28", 14)
    assert w.current[0] == "2026-03-15"
    assert w.current[-1] == "2026-03-28"
    assert w.reference[-1] == "2026-03-14"
    assert len(w.reference) == 14
    assert days_ending("2026-01-02", 3) == ["2025-12-31", "2026-01-01", "2026-01-02"]
    with pytest.raises(ValueError, match="length"):
        days_ending("2026-01-02", 0)


# --- history ----------------------------------------------------------------------------


def _record(run_id, end, levels, severity="none", policy_version="v1"):
    return history.CheckRecord(
        run_id, date(2026, 1, 1), end, "sliding", "ref", severity, policy_version, levels, []
    )


def test_history_previous_levels_newest_first_without_future_or_duplicates(tmp_path):
    engine = history.engine_for(f"sqlite:///{tmp_path / 'h.db'}")
    history.record_check(engine, _record("r1", date(2026, 1, 10), {"b": "warn"}))
    history.record_check(engine, _record("r2", date(2026, 1, 11), {"b": "critical"}, "critical"))
    history.record_check(
        engine, _record("r2b", date(2026, 1, 11), {"b": "none"})
    )  # later re-check of day 11
    history.record_check(engine, _record("r3", date(2026, 1, 13), {"b": "none"}))
    levels = history.previous_levels(engine, date(2026, 1, 12), exclude_run_id="now", limit=5)
    assert levels == [{"b": "none"}, {"b": "warn"}]
    # only the `limit` days before the window end count
    assert history.previous_levels(engine, date(2026, 1, 12), exclude_run_id="now", limit=1) == [
        {"b": "none"}
    ]
    assert history.previous_levels(engine, date(2026, 1, 14), exclude_run_id="now", limit=1) == [
        {"b": "none"}
    ]
    assert history.previous_levels(engine, date(2026, 1, 15), exclude_run_id="now", limit=1) == []
    # a manual run with its own thresholds (`+override`) re-checks day 11 leniently: the
    # checks after it still see the policy's own check of that day
    history.record_check(
        engine, _record("manual", date(2026, 1, 11), {"b": "none"}, policy_version="v1+override")
    )
    history.record_check(engine, _record("r2c", date(2026, 1, 11), {"b": "warn"}))
    history.record_check(
        engine, _record("lenient", date(2026, 1, 11), {"b": "none"}, policy_version="v1+override")
    )
    assert history.previous_levels(engine, date(2026, 1, 12), exclude_run_id="now", limit=1) == [
        {"b": "warn"}
    ]
    # recording the same run again replaces it
    history.record_check(engine, _record("r1", date(2026, 1, 10), {"b": "critical"}, "critical"))
    assert history.get_check(engine, "r1")["feature_levels"] == {"b": "critical"}
    assert history.detections_by_severity(engine) == {"warn": 0, "critical": 2}


def test_history_finds_another_runs_check_of_the_same_window_end(tmp_path):
    engine = history.engine_for(f"sqlite:///{tmp_path / 'h.db'}")
    day = date(2026, 11, 28)
    assert history.check_of_window_end(engine, day, exclude_run_id="cron") is None
    history.record_check(engine, _record("asset__1", day, {"b": "none"}))
    history.record_check(engine, _record("asset__0", date(2026, 11, 27), {"b": "none"}))
    assert history.check_of_window_end(engine, day, exclude_run_id="cron") == "asset__1"
    # a re-run (cleared task) of the run that checked it is not "another" check
    assert history.check_of_window_end(engine, day, exclude_run_id="asset__1") is None


def test_history_events_lifecycle(tmp_path):
    engine = history.engine_for(f"sqlite:///{tmp_path / 'h.db'}")
    event_id = history.open_event(engine, "run-1", "critical", ["brightness"])
    assert history.open_event(engine, "run-1", "critical", ["brightness"]) == event_id  # idempotent
    assert history.get_event(engine, event_id)["status"] == "NEEDS_REVIEW"
    history.set_event_status(engine, event_id, "IGNORED", actor="alice", note="known camera swap")
    event = history.get_event(engine, event_id)
    assert (event["status"], event["actor"], event["features"]) == (
        "IGNORED",
        "alice",
        ["brightness"],
    )
    with pytest.raises(ValueError, match="status"):
        history.set_event_status(engine, event_id, "DONE", actor=None)
    with pytest.raises(LookupError):
        history.set_event_status(engine, 999, "ACTIONED", actor=None)


def _critical(run_id: str, end: str, reference_id: str, kind: str) -> dict:
    return {
        "severity": "critical",
        "drifted_features": ["brightness"],
        "window": {"start": "2026-01-01", "end": end},
        "policy_version": "v1",
        "decision_uri": f"s3://b/reports/{run_id}/decision.json",
        "reference": {"kind": kind, "reference_id": reference_id},
        "policy": {"windows": {"length_days": 14}},
    }


def test_a_sustained_drift_is_one_event(tmp_path):
    """Critical day after day: the later checks attach to the ongoing event (no second
    approval or retraining) until it is answered, the baseline changes or the window moves on."""
    from driftloop.config.settings import Settings
    from driftloop.drift.events import open_drift_event

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}")
    engine = history.engine_for(settings.database_url)

    def check(run_id, end, reference_id="champion-v1", kind="champion"):
        history.record_check(
            engine,
            history.CheckRecord(
                run_id, date(2026, 1, 1), date.fromisoformat(end), kind, reference_id,
                "critical", "v1", {"brightness": "critical"}, ["brightness"],
            ),
        )  # fmt: skip
        return open_drift_event(settings, _critical(run_id, end, reference_id, kind), run_id)

    first = check("r1", "2026-02-10")
    assert first["already_open"] is False
    assert check("r1", "2026-02-10")["event_id"] == first["event_id"]  # a re-run: the same
    second = check("r2", "2026-02-11")
    assert (second["event_id"], second["already_open"]) == (first["event_id"], True)
    # a new champion's reference is another drift
    other = check("r3", "2026-02-11", reference_id="champion-v2")
    assert other["already_open"] is False
    assert other["event_id"] != first["event_id"]
    # once the opening check has left the window, a persisting drift opens a new event
    assert check("r4", "2026-02-23")["already_open"] is True
    assert check("r5", "2026-02-24")["already_open"] is False
    # an answered event (ignored) is over: the next critical check asks again
    history.set_event_status(engine, other["event_id"], "IGNORED", actor="alice")
    assert check("r6", "2026-02-12", reference_id="champion-v2")["already_open"] is False


def test_sliding_references_of_consecutive_days_are_one_baseline(tmp_path):
    """Without a champion the reference slides with the window (another id every day): a
    drift that persists is still the same drift."""
    from driftloop.config.settings import Settings
    from driftloop.drift.events import open_drift_event

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}")
    engine = history.engine_for(settings.database_url)
    opened = []
    for run_id, end in (("a", "2026-03-01"), ("b", "2026-03-02"), ("c", "2026-03-03")):
        history.record_check(
            engine,
            history.CheckRecord(
                run_id, date(2026, 1, 1), date.fromisoformat(end), "sliding", f"sliding-{end}",
                "critical", "v1", {"brightness": "critical"}, ["brightness"],
            ),
        )  # fmt: skip
        decision = _critical(run_id, end, f"sliding-{end}", "sliding")
        opened.append(open_drift_event(settings, decision, run_id))
    assert [o["already_open"] for o in opened] == [False, True, True]
    assert {o["event_id"] for o in opened} == {opened[0]["event_id"]}


def test_a_late_check_joins_only_an_event_whose_window_holds_its_last_day(tmp_path):
    """A check of an older window run after an event was opened belongs to that event when
    the event's window holds the older window's last day (the same days drifted); a window
    months away is another drift, even against a sliding reference."""
    from driftloop.config.settings import Settings
    from driftloop.drift.events import open_drift_event

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}")
    engine = history.engine_for(settings.database_url)

    def check(run_id, start, end):
        history.record_check(
            engine,
            history.CheckRecord(
                run_id, date.fromisoformat(start), date.fromisoformat(end), "sliding",
                f"sliding-{end}", "critical", "v1", {"brightness": "critical"}, ["brightness"],
            ),
        )  # fmt: skip
        return open_drift_event(
            settings, _critical(run_id, end, f"sliding-{end}", "sliding"), run_id
        )

    opened = check("later", "2037-01-01", "2037-01-14")
    history.set_event_status(engine, opened["event_id"], "IGNORED", actor="alice")
    late = check("late", "2036-12-30", "2037-01-12")
    assert (late["event_id"], late["already_open"]) == (opened["event_id"], True)
    far = check("far", "2025-06-17", "2025-06-30")
    assert far["already_open"] is False
    assert far["event_id"] != opened["event_id"]


def test_routes_after_the_verdict():
    from driftloop.drift.events import approval_route, route_for_severity

    assert route_for_severity("warn") == "notify_warning"
    with pytest.raises(ValueError, match="unknown severity 'bad'"):
        route_for_severity("bad")
    event = {"already_open": False, "decision": {"policy": {"approval": "required"}}}
    assert approval_route(event) == "await_approval"
    assert approval_route({**event, "already_open": True}) == "drift_event_already_open"
    event["decision"]["policy"]["approval"] = "none"
    assert approval_route(event) == "approved_by_policy"
    event["decision"]["policy"]["approval"] = "maybe"
    with pytest.raises(ValueError, match="unknown approval mode 'maybe'"):
        approval_route(event)
