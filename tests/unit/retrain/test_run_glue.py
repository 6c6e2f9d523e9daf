"""What the thin retrain_detector tasks call: the plan task as one function, the branch
rules after plan, snapshot and gate, and the promotion-policy overrides a run's Params carry.
The ledger and the drift history are real SQLite databases in a temp folder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from driftloop.config.policies import PolicyError
from driftloop.config.promotion_policy import DEFAULT_PROMOTION_POLICY_PATH
from driftloop.config.settings import Settings
from driftloop.retrain.decision import after_gate
from driftloop.retrain.plan import after_plan, after_snapshot, asset_event_extras, plan_run
from driftloop.retrain.policy import run_policy

MOMENT = datetime(2031, 3, 10, 4, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path):
    return Settings(database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")


def _plan(settings, params, events=(), run_type="manual", variable=None):
    return plan_run(
        settings,
        params,
        asset_events=events,
        run_type=run_type,
        moment=MOMENT,
        auto_retrain_variable=variable,
        run_id="run-1",
    )


def test_asset_event_extras_are_read_per_asset_and_absent_for_other_runs():
    asset = object()
    events = {asset: [SimpleNamespace(extra={"event_id": 3}), SimpleNamespace(extra=None)]}
    assert asset_event_extras(events, asset) == [{"event_id": 3}, {}]
    assert asset_event_extras(events, object()) == []
    assert asset_event_extras(None, asset) == []
    assert asset_event_extras({}, asset) == []


def test_a_drift_event_plans_its_window_and_the_policy_it_runs_under(settings):
    planned = _plan(
        settings,
        {"last_n_days": 3},
        [{"event_id": 4, "window_end": "2031-03-01", "drifted_features": ["contrast"]}],
        run_type=SimpleNamespace(value="asset_triggered"),  # the Task SDK's enum
    )
    assert planned["trigger"]["kind"] == "drift"
    assert planned["days"] == ["2031-02-27", "2031-02-28", "2031-03-01"]
    assert planned["action"] == "train"
    assert planned["promotion_policy"]["version"] == run_policy(settings).version
    assert planned["promotion_policy"]["source"] == str(DEFAULT_PROMOTION_POLICY_PATH)


def test_the_window_ends_the_day_before_the_run_in_utc(settings):
    planned = plan_run(
        settings,
        {"last_n_days": 1},
        asset_events=[],
        run_type="scheduled",
        # 01:00 on the 11th in UTC+3 is 22:00 on the 10th in UTC
        moment=datetime.fromisoformat("2031-03-11T01:00:00+03:00"),
        auto_retrain_variable=None,
        run_id="run-2",
    )
    assert planned["trigger"]["kind"] == "schedule"
    assert planned["days"] == ["2031-03-09"]


def test_the_variable_turns_a_drift_into_a_review(settings):
    planned = _plan(settings, {}, [{"event_id": 9}], run_type="asset_triggered", variable="off")
    assert planned["action"] == "review"
    assert planned["auto_retrain"] is False
    assert after_plan(planned) == "open_review"


def test_a_policy_override_is_checked_when_planning(settings):
    planned = _plan(settings, {"map_tolerance": 0.05, "approval": "required"})
    assert planned["promotion_policy"]["version"].endswith("+override")
    with pytest.raises(PolicyError, match=r"bootstrap\.confidence"):
        _plan(settings, {"bootstrap_confidence": 1.5})
    with pytest.raises(LookupError, match="drift_event_id"):
        _plan(settings, {"drift_event_id": 12345})


def test_run_policy_applies_the_params_and_ignores_empty_ones(settings, tmp_path):
    plain = run_policy(settings, {"map_tolerance": None, "approval": "", "reason": "x"})
    assert plain.version == yaml.safe_load(DEFAULT_PROMOTION_POLICY_PATH.read_text())["version"]
    changed = run_policy(
        settings, {"min_map50": 0.9, "bootstrap_n_resamples": 200, "promote_to": "challenger"}
    )
    assert (changed.min_map50, changed.bootstrap_n_resamples) == (0.9, 200)
    assert changed.promote_to == "challenger"
    assert changed.version == f"{plain.version}+override"
    elsewhere = tmp_path / "policy.yaml"
    elsewhere.write_text(
        DEFAULT_PROMOTION_POLICY_PATH.read_text().replace("approval: none", "approval: required")
    )
    moved = Settings(promotion_policy_path=str(elsewhere))
    assert run_policy(moved).approval == "required"


@pytest.mark.parametrize(
    ("action", "after_the_plan", "after_the_snapshot"),
    [
        ("train", "snapshot_dataset", "training"),
        ("dry_run", "snapshot_dataset", "dry_run_done"),
        ("review", "open_review", "training"),
    ],
)
def test_branches_after_plan_and_snapshot(action, after_the_plan, after_the_snapshot):
    assert after_plan({"action": action}) == after_the_plan
    assert after_snapshot({"action": action}) == after_the_snapshot


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="'retrain' is not one of"):
        after_plan({"action": "retrain"})


@pytest.mark.parametrize(
    ("promote", "requires_approval", "task_id"),
    [
        (False, False, "rejected_by_gate"),
        (False, True, "rejected_by_gate"),  # nothing to approve when the gate failed
        (True, True, "await_promotion_approval"),
        (True, False, "approved_by_policy"),
    ],
)
def test_branch_after_the_gate(promote, requires_approval, task_id):
    assert after_gate({"promote": promote, "requires_approval": requires_approval}) == task_id


def test_a_param_cannot_switch_off_the_approval_the_policy_file_requires(settings, tmp_path):
    strict = tmp_path / "strict.yaml"
    document = yaml.safe_load(Path(DEFAULT_PROMOTION_POLICY_PATH).read_text())
    strict.write_text(yaml.safe_dump({**document, "approval": "required"}))
    strict_settings = settings.model_copy(update={"promotion_policy_path": strict})
    with pytest.raises(ValueError, match="Param approval='none' would weaken"):
        run_policy(strict_settings, {"approval": "none"})
    assert run_policy(strict_settings, {"approval": "required"}).approval == "required"
    # the other way round is allowed: a run may ask for an approval the file does not
    assert run_policy(settings, {"approval": "required"}).approval == "required"


@pytest.mark.parametrize(
    ("param", "value", "named"),
    [
        ("min_map50", 0.5, "min_map50 0.8 → 0.5"),
        ("min_map50_95", 0.1, "min_map50_95 0.4 → 0.1"),
        ("map_tolerance", 0.5, "map_tolerance 0.02 → 0.5"),
        ("latency_tolerance", 0.9, "latency_tolerance 0.1 → 0.9"),
        ("int8_max_map_loss", 0.2, "int8_max_map_loss 0.01 → 0.2"),
        ("max_p95_latency_ms", 300.0, "max_p95_latency_ms 30.0 → 300.0"),
        ("bootstrap_confidence", 0.5, "bootstrap_confidence 0.95 → 0.5"),
        ("primary_metric", "map50", "primary_metric map50_95 → map50"),
    ],
)
def test_a_param_loosens_the_gate_only_when_an_operator_approves(settings, param, value, named):
    with pytest.raises(ValueError, match="only when an operator approves") as refused:
        run_policy(settings, {param: value})
    assert named in str(refused.value)
    approved = run_policy(settings, {param: value, "approval": "required"})
    assert approved.approval == "required"
    assert approved.version.endswith("+override")


def test_stricter_and_neutral_params_need_no_approval(settings):
    stricter = run_policy(
        settings,
        {"min_map50": 0.9, "map_tolerance": 0.0, "max_p95_latency_ms": 10.0,
         "bootstrap_confidence": 0.99, "promote_to": "challenger", "primary_metric": "map50_95",
         "bootstrap_n_resamples": 5000},
    )  # fmt: skip
    assert (stricter.min_map50, stricter.map_tolerance, stricter.approval) == (0.9, 0.0, "none")
