"""What a trigger's conf may say, checked before anything runs (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from driftloop.airflow.run_conf import RunConfError, check_conf_keys, check_drift_params
from driftloop.config.drift_policy import drift_param_defaults, load_policy
from driftloop.config.policies import PolicyError
from driftloop.config.settings import Settings
from driftloop.drift.run import announced_days, resolve_drift_run

DECLARED = [
    "end_date",
    "window_days",
    "psi_warn",
    "psi_critical",
    "hysteresis_k",
    "hysteresis_n",
    "fdr_alpha",
    "approval",
]
DEFAULTS = {"k": 2, "n": 3, "psi_warn": 0.1, "psi_critical": 0.25}


def test_unknown_conf_keys_are_named_with_the_accepted_ones():
    check_conf_keys({"end_date": "2026-11-28"}, DECLARED, "drift_monitor")
    check_conf_keys(None, DECLARED, "drift_monitor")
    with pytest.raises(RunConfError) as err:
        check_conf_keys({"end_day": "x", "hysteresis-k": 3, "window_days": 7}, DECLARED, "d")
    message = str(err.value)
    assert "'end_day'" in message
    assert "'hysteresis-k'" in message
    assert "window_days" in message.split("are:")[1]  # the list of what is accepted
    assert "'window_days'" not in message.split("are:")[0]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"hysteresis_k": 4, "hysteresis_n": 3}, ["hysteresis_k=4", "hysteresis_n=3"]),
        # only k given: the policy's n is what it contradicts, and the message says so
        ({"hysteresis_k": 5}, ["hysteresis_k=5", "the policy's 3"]),
        ({"hysteresis_n": 1}, ["hysteresis_n=1", "the policy's 2"]),
        ({"psi_warn": 0.3, "psi_critical": 0.2}, ["psi_warn=0.3", "psi_critical=0.2"]),
        ({"psi_critical": 0.05}, ["psi_critical=0.05", "the policy's 0.1"]),
    ],
)
def test_contradictory_params_are_refused_naming_them(params, named):
    with pytest.raises(RunConfError) as err:
        check_drift_params(params, DEFAULTS)
    for part in named:
        assert part in str(err.value)
    assert "drift_policy" not in str(err.value)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"hysteresis_k": 3},
        {"hysteresis_k": 1, "hysteresis_n": 1},
        {"psi_warn": 0.2},
        {"psi_warn": 0.2, "psi_critical": 0.2},
    ],
)
def test_consistent_params_pass(params):
    check_drift_params(params, DEFAULTS)


def test_defaults_come_from_the_strictest_kind():
    policy = load_policy(
        Settings().policy_path,
        {"defaults": {"categorical": {"warn": 0.05, "critical": 0.2}}},
    )
    assert drift_param_defaults(policy) == {"k": 2, "n": 3, "psi_warn": 0.05, "psi_critical": 0.2}


def _resolve(params, **kwargs):
    base = {
        "conf": dict(params),
        "declared_params": DECLARED,
        "announced_days": [],
        "logical_date": None,
        "run_after": datetime(2026, 11, 29, 2, 30, tzinfo=UTC),
    }
    return resolve_drift_run(Settings(), params, **{**base, **kwargs})


def test_resolve_run_fixes_the_end_day_and_the_policy():
    resolved = _resolve({"hysteresis_k": 3, "hysteresis_n": 4})
    assert resolved["end_day"] == "2026-11-28"
    assert resolved["end_day_from"] == "run_after"
    assert resolved["policy"]["hysteresis"] == {"k": 3, "n": 4, "break_skips_wait": True}
    assert resolved["policy"]["version"].endswith("+override")
    cron = datetime(2026, 11, 29, 2, 30, tzinfo=UTC)
    scheduled = _resolve({}, logical_date=cron)
    assert (scheduled["end_day"], scheduled["end_day_from"]) == ("2026-11-28", "logical_date")
    asset = _resolve({}, announced_days=["2026-11-20", "2026-11-21"])
    assert (asset["end_day"], asset["end_day_from"]) == ("2026-11-21", "asset_event")
    manual = _resolve({"end_date": "2026-10-01"}, announced_days=["2026-11-21"])
    assert (manual["end_day"], manual["end_day_from"]) == ("2026-10-01", "end_date")


def test_resolve_run_refuses_bad_params_before_anything_else():
    with pytest.raises(RunConfError, match="hysteresis_k"):
        _resolve({"hysteresis_k": 5, "hysteresis_n": 2})
    with pytest.raises(RunConfError, match="unknown conf key"):
        _resolve({"hysteresis": 2})
    with pytest.raises(RunConfError, match="end_date"):
        _resolve({"end_date": "29/11/2026"})
    # an approval value that is none of the policy's is named with the Param
    with pytest.raises(RunConfError, match=r"Param approval='sometimes'"):
        _resolve({"approval": "sometimes"})


def test_a_broken_policy_file_is_named_as_the_file(tmp_path):
    broken = tmp_path / "drift_policy.yaml"
    broken.write_text("version: x\n")
    with pytest.raises(PolicyError, match=r"drift_policy\.yaml"):
        resolve_drift_run(
            Settings(policy_path=str(broken)),
            {},
            conf={},
            declared_params=DECLARED,
            announced_days=[],
            logical_date=None,
            run_after=datetime(2026, 11, 29, tzinfo=UTC),
        )


def test_announced_days_read_the_asset_events_extra():
    extras = [{"day": "2026-11-28"}, None, {}, {"day": "2026-11-27"}, {"day": "2026-11-28"}]
    assert announced_days(extras) == ["2026-11-27", "2026-11-28"]


def test_params_are_built_from_the_policy_model_with_no_null_choice():
    from driftloop.airflow.params import drift_monitor_params
    from driftloop.config.drift_policy import RUN_OVERRIDES, policy_overrides

    params = drift_monitor_params()
    assert list(params) == ["end_date", *(o.param for o in RUN_OVERRIDES)]
    assert sorted(params) == sorted(DECLARED)
    for name, param in params.items():
        assert param.value is None, name
        assert "null" in param.schema["type"], name
        assert None not in param.schema.get("enum", []), name  # no literal "null" choice
        assert param.description, name
    assert params["fdr_alpha"].schema["exclusiveMaximum"] == 1  # the model's bounds
    assert params["window_days"].schema["type"] == ["null", "integer"]
    approval = params["approval"]
    assert "enum" not in approval.schema
    assert approval.schema["examples"] == ["none", "required"]
    assert approval.resolve("required") == "required"
    assert approval.resolve(None) is None
    with pytest.raises(Exception, match="sometimes"):
        approval.resolve("sometimes")
    assert policy_overrides({"psi_warn": 0.2, "approval": "", "window_days": None}) == {
        "defaults": {"numeric": {"warn": 0.2}, "categorical": {"warn": 0.2}}
    }
