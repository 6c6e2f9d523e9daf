"""driftloop.notify.messages: each kind names the versions, the run, the reason, the numbers
and the links; values are escaped for Slack's mrkdwn; bad payloads fail naming the key."""

from __future__ import annotations

import json

import pytest

from driftloop.notify.messages import KINDS, SECTION_MAX, build_message

RUN = {
    "model": "driftloop-detector",
    "dag_id": "retrain_detector",
    "run_id": "manual__2026-11-30T10:00:00",
    "task_id": "promote",
    "airflow_url": "http://airflow.example/dags/retrain_detector/runs/manual__2026",
    "mlflow_url": "http://mlflow.example/#/models/driftloop-detector/versions/4",
}
WINDOW = {"start": "2026-11-01", "end": "2026-11-14"}
FEATURES = [
    {"feature": "brightness", "method": "psi", "effect": 0.3123, "alert_level": "critical"},
    {"feature": "camera_id", "method": "js", "effect": 0.12, "alert_level": "warn"},
]
GATE_CHECKS = [
    {"name": "map50_95_delta_low", "passed": True, "value": 0.034, "threshold": -0.01, "op": ">="},
    {"name": "p95_latency_ratio", "passed": False, "value": 1.31, "threshold": 1.1, "op": "<="},
]

PAYLOADS = {
    "drift_warning": {
        **RUN,
        "window": WINDOW,
        "features": FEATURES[1:],
        "report_url": "http://mlflow.example/#/experiments/1/runs/abc/artifactPath/report.html",
        "reference": {"kind": "champion", "model_version": "3"},
    },
    "drift_critical": {
        **RUN,
        "window": WINDOW,
        "drift_event_id": 7,
        "features": FEATURES,
        "approval": "required",
        "report_url": "http://mlflow.example/#/experiments/1/runs/abc/artifactPath/report.html",
    },
    "promotion": {**RUN, "version": "4", "previous_version": "3", "checks": GATE_CHECKS},
    "rejection": {
        **RUN,
        "version": "5",
        "champion_version": "4",
        "reasons": ["mAP@0.5:0.95 delta lower bound -0.031 < -0.01"],
        "checks": GATE_CHECKS,
    },
    "rollback": {
        **RUN,
        "withdrawn": "4",
        "restored": "3",
        "reason": "INC-42: false positives on camera 3",
        "mode": "automatic",
        "actor": "rollout_guard",
    },
    "rollout_stage": {
        **RUN,
        "subject": "4",
        "baseline": "3",
        "from_stage": "shadow",
        "to_stage": "canary",
        "share": 0.05,
        "rollout_id": "rollout-4-20261130T101500Z",
        "verdict": "pass",
        "checks": [
            {
                "name": "agreement",
                "camera": "all",
                "estimate": 0.91,
                "low": 0.88,
                "high": 0.93,
                "threshold": 0.7,
                "status": "pass",
            },
        ],
    },
    "task_failure": {
        **RUN,
        "task_id": "evaluate",
        "try_number": 2,
        "exception": "RuntimeError: MLflow answered 503",
        "log_url": "http://airflow.example/dags/retrain_detector/runs/x/tasks/evaluate",
    },
}


def _all_text(message: dict) -> str:
    return message["text"] + "\n" + json.dumps(message["blocks"])


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_text_blocks_run_and_links(kind):
    message = build_message(kind, PAYLOADS[kind])
    assert set(message) == {"text", "blocks"}
    assert message["blocks"][0]["type"] == "header"
    assert len(message["blocks"][0]["text"]["text"]) <= 150
    everything = _all_text(message)
    assert RUN["run_id"] in everything  # the run
    assert f"<{RUN['airflow_url']}|Airflow run>" in everything
    assert f"<{RUN['mlflow_url']}|MLflow model version>" in everything
    json.dumps(message)  # a webhook body


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("drift_warning", ["Drift warning", "2026-11-01..2026-11-14", "camera_id", "js=0.12",
                           "Drift report", "v3"]),
        ("drift_critical", ["Critical drift", "drift event 7", "brightness", "psi=0.3123",
                            "(critical)", "Required actions", "Drift report"]),
        ("promotion", ["Promoted", "v4", "champion", "replacing v3", "map50_95_delta_low",
                       "PASS 0.034", "&gt;=-0.01"]),
        ("rejection", ["Rejected", "v5", "v4 stays champion", "delta lower bound -0.031",
                       "p95_latency_ratio", "FAIL 1.31"]),
        ("rollback", ["Rollback (automatic)", "v4 withdrawn", "v3 is champion again",
                      "INC-42", "rollout_guard"]),
        ("rollout_stage", ["v4 shadow → canary", "against v3", "5% of the frames",
                           "rollout-4-20261130T101500Z", "agreement", "CI 0.88..0.93"]),
        ("task_failure", ["Task failed: retrain_detector.evaluate", "try 2",
                          "MLflow answered 503", "|Task log>"]),
    ],
)  # fmt: skip
def test_each_kind_names_its_versions_reason_and_numbers(kind, expected):
    everything = _all_text(build_message(kind, PAYLOADS[kind]))
    for fragment in expected:
        assert fragment in everything, (kind, fragment)


def test_rejection_lists_only_the_failed_checks():
    text = _all_text(build_message("rejection", PAYLOADS["rejection"]))
    assert "p95_latency_ratio" in text
    assert "map50_95_delta_low" not in text


def test_values_are_escaped_so_they_cannot_become_links_or_mentions():
    payload = {
        **PAYLOADS["rollback"],
        "reason": "see <http://evil.example|click> & <!channel>",
    }
    message = build_message("rollback", payload)
    everything = _all_text(message)
    assert "<http://evil.example" not in everything
    assert "<!channel>" not in everything
    assert "&lt;!channel&gt;" in message["text"]
    assert "&amp;" in message["text"]


def test_links_other_than_http_are_left_out():
    payload = {
        **PAYLOADS["promotion"],
        "mlflow_url": "javascript:alert(1)",
        "report_url": "s3://bucket/report.html",
        "airflow_url": "http://a.example/x|y>",
    }
    everything = _all_text(build_message("promotion", payload))
    assert "javascript:" not in everything
    assert "s3://" not in everything
    assert "a.example" not in everything


def test_long_parts_are_cut_to_slack_limits():
    many = [{"feature": f"f{i}" * 50, "method": "psi", "effect": 0.5} for i in range(200)]
    payload = {**PAYLOADS["drift_critical"], "features": many, "exception": "x" * 10_000}
    message = build_message("drift_critical", payload)
    assert len(message["text"]) <= SECTION_MAX
    for block in message["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= SECTION_MAX
    assert "… and 190 more" in _all_text(message)
    failure = build_message("task_failure", {**PAYLOADS["task_failure"], "exception": "y" * 9999})
    assert len(failure["text"]) < 2000


def test_messages_are_a_pure_function_of_the_payload():
    assert build_message("promotion", PAYLOADS["promotion"]) == build_message(
        "promotion", dict(PAYLOADS["promotion"])
    )


def test_minimal_payloads_still_read():
    message = build_message("promotion", {"version": "2"})
    assert "v2" in message["text"]
    assert "no champion before" in message["text"]
    rollback = build_message("rollback", {"withdrawn": "2", "restored": "1"})
    assert "Rollback (manual)" in rollback["text"]


def test_unknown_kind_and_missing_keys_fail_naming_them():
    with pytest.raises(ValueError, match="unknown notification kind 'drift_wobble'"):
        build_message("drift_wobble", {})
    with pytest.raises(ValueError, match="promotion notification: the payload has no 'version'"):
        build_message("promotion", {"target": "champion"})
    with pytest.raises(ValueError, match="'window' needs 'start' and 'end'"):
        build_message("drift_warning", {"window": {"start": "2026-01-01"}})
    with pytest.raises(ValueError, match="no 'drift_event_id'"):
        build_message("drift_critical", {"window": WINDOW})
    with pytest.raises(ValueError, match="no 'task_id'"):
        build_message("task_failure", {"dag_id": "d", "run_id": "r"})
