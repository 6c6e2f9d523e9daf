"""The performance verdict in the drift decision: severity, drift events of kind
``performance``, the warning's and the notification's words, the published metrics, and the
policy's ``performance:`` section."""

from __future__ import annotations

from datetime import date

import pytest

from driftloop.config.drift_policy import load_policy
from driftloop.config.policies import PolicyError
from driftloop.config.settings import DEFAULT_POLICY_PATH, Settings
from driftloop.drift import history
from driftloop.drift.compare import FeatureComparison
from driftloop.drift.decision import decide
from driftloop.drift.events import event_kind, open_drift_event, warning_summary
from driftloop.drift.publish import performance_metrics, performance_scores
from driftloop.drift.verdict import judge_performance
from driftloop.notify.messages import build_message
from driftloop.notify.payloads import drift_payload
from driftloop.performance.verdict import judge

BASELINE = {"map50": 0.85, "map50_95": 0.52, "source": "gate evaluation of v3"}


@pytest.fixture
def policy():
    return load_policy(DEFAULT_POLICY_PATH)


def measured(day, value, camera="*", n=200):
    return {
        "day": day,
        "source": "measured",
        "camera": camera,
        "n_frames": n,
        "map50": value + 0.3,
        "map50_95": value,
        "map50_95_low": value - 0.01,
        "map50_95_high": value + 0.01,
    }


def stable(feature="brightness"):
    return FeatureComparison(feature, "numeric", "ks", 0.9, {"psi": 0.001, "ks": 0.01})


def drifted(feature="brightness"):
    return FeatureComparison(feature, "numeric", "ks", 1e-12, {"psi": 0.6, "ks": 0.4})


def cam2_drop(policy):
    series = [measured("2026-11-09", 0.47, "cam_2"), measured("2026-11-10", 0.47, "cam_2")]
    series += [measured("2026-11-09", 0.51), measured("2026-11-10", 0.51)]
    return judge(series, BASELINE, policy.performance, model_version="3")


def test_the_severity_is_the_worse_of_input_drift_and_performance(policy):
    warn = cam2_drop(policy)
    assert warn.level == "warn"
    decision = decide([stable()], policy, [], performance=warn)
    assert (decision.severity, decision.input_severity) == ("warn", "none")
    assert decision.drifted_features == []
    document = decision.to_dict()
    assert document["performance"]["breaching_cameras"] == ["cam_2"]
    assert document["input_severity"] == "none"
    # input drift critical (a break) and performance only warning: critical
    both = decide([drifted()], policy, [{"brightness": "critical"}], performance=warn)
    assert (both.severity, both.input_severity) == ("critical", "critical")
    # no performance verdict: the input drift alone, as before
    alone = decide([stable()], policy, [])
    assert (alone.severity, alone.performance, alone.to_dict()["performance"]) == (
        "none",
        None,
        None,
    )


def _decision(policy, run_id, *, performance, severity, input_severity, features):
    return {
        "severity": severity,
        "input_severity": input_severity,
        "drifted_features": features,
        "features": [],
        "performance": performance,
        "window": {"start": "2026-10-28", "end": "2026-11-10"},
        "policy_version": policy.version,
        "decision_uri": f"s3://b/reports/{run_id}/decision.json",
        "reference": {"kind": "champion", "reference_id": "champion-v3", "model_version": "3"},
        "policy": policy.to_dict(),
    }


def _record(engine, run_id, severity):
    history.record_check(
        engine,
        history.CheckRecord(
            run_id, date(2026, 10, 28), date(2026, 11, 10), "champion", "champion-v3",
            severity, "v1", {"brightness": "none"}, [],
        ),
    )  # fmt: skip


def test_a_performance_breach_alone_opens_an_event_of_kind_performance(tmp_path, policy):
    from driftloop.retrain.records import ledger

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}")
    engine = history.engine_for(settings.database_url)
    crash = judge(
        [measured("2026-11-10", 0.40, "cam_2")], BASELINE, policy.performance, model_version="3"
    )
    assert crash.level == "critical"
    decision = _decision(
        policy,
        "r1",
        performance=crash.to_dict(),
        severity="critical",
        input_severity="none",
        features=[],
    )
    assert event_kind(decision) == "performance"
    _record(engine, "r1", "critical")
    opened = open_drift_event(settings, decision, "r1")
    event = history.get_event(engine, opened["event_id"])
    assert (event["kind"], event["severity"], event["features"]) == (
        "performance",
        "critical",
        [],
    )
    row = ledger(settings).get("drift_monitor/r1/open_drift_event")
    assert row.payload["kind"] == "performance"
    assert (
        "map50_95 down 0.120 to 0.400 (champion 0.520), camera(s) cam_2"
        in (row.payload["performance"])
    )
    # both drifted: the event stays an input drift one, the verdict is in the decision
    both = {**decision, "input_severity": "critical", "drifted_features": ["brightness"]}
    assert event_kind(both) == "input"
    assert event_kind({**decision, "performance": None, "input_severity": "critical"}) == "input"


def test_event_kinds_are_checked(tmp_path):
    engine = history.engine_for(f"sqlite:///{tmp_path / 'h.db'}")
    with pytest.raises(ValueError, match="event kind must be one of"):
        history.open_event(engine, "r", "critical", [], kind="accuracy")
    event_id = history.open_event(engine, "r", "critical", ["brightness"])
    assert history.get_event(engine, event_id)["kind"] == "input"  # the default


def test_the_warning_and_the_notifications_name_the_drop_and_the_camera(policy):
    warn = cam2_drop(policy).to_dict()
    decision = _decision(
        policy, "r2", performance=warn, severity="warn", input_severity="none", features=[]
    )
    summary = warning_summary(decision, "http://mlflow/report")
    assert "map50_95 down 0.050 to 0.470 (champion 0.520), camera(s) cam_2" in summary["message"]
    assert "days 2026-11-10, 2026-11-09 (warn)" in summary["message"]
    message = build_message("drift_warning", drift_payload(decision, "http://mlflow/report"))
    assert "Accuracy drop (warn): map50_95 0.47 vs the champion's 0.52" in message["text"]
    assert "`cam_2`" in message["text"]
    assert "feature(s) beyond" not in message["text"]  # no input drift to list
    critical = build_message(
        "drift_critical", drift_payload(decision, "http://mlflow/report", event_id=4)
    )
    assert "Accuracy drop" in critical["text"]
    assert "drift event 4" in critical["text"]
    # no performance alert: the feature list as before
    quiet = {**decision, "performance": {**warn, "level": "none"}}
    assert (
        "0 feature(s) beyond" in build_message("drift_warning", drift_payload(quiet, None))["text"]
    )


def test_judge_performance_merges_the_stored_series_with_this_checks_rows(tmp_path, policy):
    from driftloop.performance.store import write_rows

    engine = history.engine_for(f"sqlite:///{tmp_path / 'h.db'}")
    stored = [measured("2026-11-08", 0.47), measured("2026-10-01", 0.47)]  # 10-01: too old
    other_version = {**measured("2026-11-09", 0.30), "model_version": "2", "run_id": "old"}
    write_rows(
        engine,
        [{**r, "model_version": "3", "run_id": "earlier"} for r in stored] + [other_version],
    )
    document = {
        "model_version": "3",
        "baseline": BASELINE,
        "days": [measured("2026-11-10", 0.475)],
        "estimate_mae": None,
        "estimate_days": 0,
        "rejected": [],
    }
    verdict = judge_performance(engine, document, policy, date(2026, 11, 10))
    assert verdict.level == "warn"  # 11-08 (stored) and 11-10 (this check): 2 of 3
    assert verdict.breaching_days == ["2026-11-10", "2026-11-08"]
    assert verdict.model_version == "3"
    # no champion: nothing judged, said so
    none = judge_performance(
        engine, {"model_version": None, "baseline": None, "days": []}, policy, date(2026, 11, 10)
    )
    assert (none.level, none.reason) == (
        "none",
        "performance not judged: no champion has no evaluated map50_95 to compare with",
    )
    with pytest.raises(ValueError, match="no 'days' key"):
        judge_performance(engine, {"model_version": None, "baseline": None}, policy, None)


def test_performance_metrics_for_mlflow_and_the_pushgateway(policy):
    verdict = cam2_drop(policy).to_dict()
    document = {
        "model_version": "3",
        "baseline": BASELINE,
        "days": [
            measured("2026-11-09", 0.50),
            measured("2026-11-10", 0.51),
            measured("2026-11-10", 0.47, "cam/2"),
            {**measured("2026-11-10", 0.49), "source": "estimated", "map50_95_high": None},
        ],
        "estimate_mae": 0.02,
        "estimate_days": 1,
        "rejected": [],
    }
    metrics = performance_metrics({"performance": verdict}, document)
    assert metrics == {
        "performance/measured/map50_95/all": 0.51,  # the newest day
        "performance/measured/map50_95/cam_2": 0.47,  # a camera id as a metric name part
        "performance/estimated/map50_95/all": 0.49,
        "performance/estimate_mae": 0.02,
        "performance/baseline": 0.52,
        "performance/measured": 0.47,
        "performance/drop": pytest.approx(0.05),
        "performance/level": 1.0,
    }
    scores = {(s["feature"], s["method"]): s["value"] for s in performance_scores(metrics)}
    assert scores[("performance/all", "measured_map50_95")] == 0.51
    assert scores[("performance/cam_2", "measured_map50_95")] == 0.47
    assert scores[("performance", "estimate_mae")] == 0.02
    assert performance_metrics({"performance": None}, None) == {}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"drop_warning": 0.08}, "drop_warning 0.08 exceeds drop_critical 0.06"),
        ({"hysteresis": {"k": 4, "n": 3}}, "1 <= k <= n"),
        ({"metric": "map50"}, r"performance\.metric"),
        ({"min_frames": 0}, r"performance\.min_frames"),
        ({"ci_rule": "lower_below"}, r"performance\.ci_rule"),
        ({"drop_warnings": 0.03}, r"performance\.drop_warnings"),
    ],
)
def test_bad_performance_policy_names_the_key(override, message):
    with pytest.raises(PolicyError, match=message):
        load_policy(DEFAULT_POLICY_PATH, {"performance": override})


def test_the_performance_policy_as_shipped(policy):
    p = policy.performance
    assert (p.metric, p.drop_warning, p.drop_critical) == ("map50_95", 0.03, 0.06)
    assert (p.hysteresis.k, p.hysteresis.n, p.ci_rule) == (2, 3, "upper_below")
    assert policy.to_dict()["performance"]["min_frames"] == p.min_frames


def test_the_approval_request_of_a_performance_event_names_the_drop(tmp_path, monkeypatch, policy):
    from driftloop.drift.events import drift_request

    monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", f"sqlite:///{tmp_path / 'h.db'}")
    settings = Settings.from_env()
    engine = history.engine_for(settings.database_url)
    crash = judge([measured("2026-11-10", 0.40)], BASELINE, policy.performance, model_version="3")
    decision = _decision(
        policy,
        "r3",
        performance=crash.to_dict(),
        severity="critical",
        input_severity="none",
        features=[],
    )
    _record(engine, "r3", "critical")
    open_drift_event(settings, decision, "r3")
    subject, body = drift_request(run_id="r3")
    assert (
        subject == "Critical accuracy drop in the window ending 2026-11-10: retrain the detector?"
    )
    assert "Performance: **map50_95 down 0.120 to 0.400 (champion 0.520), all cameras" in body
