"""retrain_detector's trigger Params: the run's own, then one per promotion-policy knob, built
from the policy model; the form's defaults give a run the file's policy, and a filled knob
reaches the policy the gate decides under."""

from __future__ import annotations

import pytest
from airflow.sdk.definitions.param import ParamsDict

from driftloop.airflow.retrain_params import retrain_detector_params, run_params
from driftloop.config.promotion_overrides import TRIGGER_OVERRIDABLE, promotion_overrides
from driftloop.config.promotion_policy import DEFAULT_PROMOTION_POLICY_PATH, load_promotion_policy


def test_every_overridable_knob_is_an_optional_described_param():
    params = retrain_detector_params()
    knobs = ["_".join(path) for path in TRIGGER_OVERRIDABLE]
    assert list(params) == [*run_params(), *knobs]
    for name in knobs:
        schema = params[name].schema
        assert params[name].value is None, name
        assert "null" in schema["type"], name
        assert "Empty: the policy file's value" in params[name].description, name
    assert params["bootstrap_confidence"].schema["exclusiveMaximum"] == 1
    assert params["bootstrap_n_resamples"].schema["type"] == ["null", "integer"]
    approval = params["approval"].schema
    assert approval["examples"] == ["none", "required"]
    assert "enum" not in approval  # no select with a literal "null" choice


def test_the_form_defaults_validate_and_keep_the_policy():
    resolved = ParamsDict(retrain_detector_params()).validate()
    assert resolved["last_n_days"] == 14
    assert promotion_overrides(resolved) == {}
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH, promotion_overrides(resolved))
    assert not policy.version.endswith("+override")


def test_a_filled_knob_becomes_the_runs_policy_and_a_bad_one_is_refused():
    params = ParamsDict(retrain_detector_params())
    params["approval"] = "required"
    params["bootstrap_confidence"] = 0.9
    resolved = params.validate()
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH, promotion_overrides(resolved))
    assert policy.approval == "required"
    assert policy.bootstrap_confidence == 0.9
    assert policy.version.endswith("+override")
    from airflow.sdk.exceptions import ParamValidationError

    bad = ParamsDict(retrain_detector_params())
    with pytest.raises(ParamValidationError, match="approval"):
        bad["approval"] = "sometimes"
    with pytest.raises(ParamValidationError, match="map_tolerance"):
        bad["map_tolerance"] = 2


@pytest.mark.parametrize(
    "base", ["runs:/0123/weights/best.pt", "s3://driftloop/x/best.pt", "/srv/best.pt", "x.yaml"]
)
def test_the_base_param_is_the_champion_or_an_allowed_yaml(base):
    """issue 9: any string used to reach Ultralytics' unpickler."""
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(retrain_detector_params())
    with pytest.raises(ParamValidationError, match="base"):
        params["base"] = base
    params["base"] = "yolo11n.yaml"
    params["base"] = "champion"
    assert params.validate()["base"] == "champion"


@pytest.mark.parametrize("key", ["epochs", "imgsz", "batch", "data", "project", "device"])
def test_hyperparameters_cannot_name_a_bounded_param_or_the_data(key):
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(retrain_detector_params())
    with pytest.raises(ParamValidationError, match="hyperparameters"):
        params["hyperparameters"] = {"lr0": 0.01, key: 900}
    params["hyperparameters"] = {"lr0": 0.01, "mosaic": 0}
    assert params.validate()["hyperparameters"] == {"lr0": 0.01, "mosaic": 0}
