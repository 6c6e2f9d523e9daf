"""drift_monitor's ``approval`` Param may make approval stricter, never weaker (issue 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from driftloop.airflow.params import check_approval_not_weakened, drift_monitor_params
from driftloop.airflow.run_conf import RunConfError
from driftloop.config.settings import DEFAULT_POLICY_PATH, Settings
from driftloop.drift.run import resolve_drift_run


def _settings(tmp_path: Path, approval: str) -> Settings:
    raw = yaml.safe_load(Path(DEFAULT_POLICY_PATH).read_text())
    raw["approval"] = approval
    path = tmp_path / "drift_policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return Settings(policy_path=str(path))


def _resolve(settings: Settings, **params):
    declared = list(drift_monitor_params())
    return resolve_drift_run(
        settings,
        {name: None for name in declared} | params,
        conf={},
        declared_params=declared,
        announced_days=[],
        logical_date=None,
        run_after=None,
    )


def test_a_param_cannot_switch_off_the_approval_the_policy_requires(tmp_path):
    settings = _settings(tmp_path, "required")
    with pytest.raises(RunConfError, match="Param approval='none' would weaken the policy's"):
        _resolve(settings, end_date="2031-01-10", approval="none")
    kept = _resolve(settings, end_date="2031-01-10")
    assert kept["policy"]["approval"] == "required"
    same = _resolve(settings, end_date="2031-01-10", approval="required")
    assert same["policy"]["approval"] == "required"


def test_a_param_may_make_approval_stricter(tmp_path):
    resolved = _resolve(_settings(tmp_path, "none"), end_date="2031-01-10", approval="required")
    assert resolved["policy"]["approval"] == "required"


def test_the_check_itself():
    check_approval_not_weakened("none", None)
    check_approval_not_weakened("none", "none")
    check_approval_not_weakened("required", "required")
    with pytest.raises(RunConfError, match="expected one of none, required"):
        check_approval_not_weakened("none", "sometimes")
