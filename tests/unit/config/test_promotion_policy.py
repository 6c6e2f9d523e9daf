"""The promotion policy model (driftloop.config.promotion_policy): its document, its errors,
and the knobs a manual trigger may override."""

from __future__ import annotations

import re
import typing

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from driftloop.config.promotion_overrides import (
    TRIGGER_OVERRIDABLE,
    promotion_overrides,
    trigger_overridable_fields,
)
from driftloop.config.promotion_policy import (
    APPROVAL_MODES,
    ARCHIVE_MODES,
    DEFAULT_PROMOTION_POLICY_PATH,
    PRIMARY_METRICS,
    PROMOTE_TARGETS,
    PromotionPolicy,
    load_promotion_policy,
    parse_promotion_policy,
)
from driftloop.evaluation.coco_map import METRICS
from driftloop.promotion import gate
from driftloop.promotion.gate import PolicyError

MINIMAL = {"version": "1", "min_map50": 0.5, "min_map50_95": 0.3, "max_p95_latency_ms": 40}
#: the spec's ``rollout:`` section (issue 11)
ROLLOUT_DEFAULTS = {
    "shadow": {"min_frames": 200, "min_hours": 1},
    "canary": {"share": 0.05, "min_frames": 100, "min_hours": 1},
    "guard": {"hours": 24, "shadow_share": 0.25, "min_frames": 100},
    "confidence": 0.95,
    "slo": {
        "latency_p95_tolerance": 0.10,
        "map_tolerance": 0.02,
        "min_labeled_frames": 30,
        "detections_tolerance": 0.25,
        "confidence_tolerance": 0.05,
        "min_agreement": 0.70,
        "max_error_share": 0.01,
    },
}


def write_policy(tmp_path, text: str):
    path = tmp_path / "promotion_policy.yaml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# the document


def test_to_dict_is_the_shipped_yaml_document():
    # the ledger hashes to_dict(): it must be the file's content, key for key
    shipped = yaml.safe_load(DEFAULT_PROMOTION_POLICY_PATH.read_text())
    policy = load_promotion_policy()
    assert policy.to_dict() == shipped
    assert list(policy.to_dict()) == list(shipped)  # same key order as the file
    assert policy.source == str(DEFAULT_PROMOTION_POLICY_PATH)
    assert parse_promotion_policy(policy.to_dict()).to_dict() == policy.to_dict()


def test_defaults_fill_a_minimal_document():
    doc = parse_promotion_policy(MINIMAL).to_dict()
    assert doc == {
        "version": "1",
        "primary_metric": "map50_95",
        "map_tolerance": 0.02,
        "latency_tolerance": 0.10,
        "int8_max_map_loss": 0.01,
        "min_map50": 0.5,
        "min_map50_95": 0.3,
        "max_p95_latency_ms": 40.0,
        "promote_to": "champion",
        "approval": "none",
        "auto_retrain": True,
        "new_labels": {"min_frames": 200},
        "retention": {"keep_last": 10, "archive": "tag"},
        "bootstrap": {"n_resamples": 1000, "confidence": 0.95},
        "latency": {"rounds": 150, "confidence": 0.95, "same_graph_tolerance": 0.5},
        "slices": {"tolerance": 0.02, "min_images": 20, "confidence": 0.95},
        "rollout": ROLLOUT_DEFAULTS,
    }


def test_the_shipped_rollout_section_is_the_spec_and_documents_each_knob():
    policy = load_promotion_policy()
    assert policy.version == "2026.12.1"
    assert policy.rollout.model_dump() == ROLLOUT_DEFAULTS
    # the rollout evidence reads these names (RolloutSLO.from_policy)
    assert policy.rollout.canary.share == 0.05
    assert policy.rollout.guard.hours == 24
    assert policy.rollout.slo.latency_p95_tolerance == 0.10
    # every knob of the section has its comment in the file, right above it
    lines = DEFAULT_PROMOTION_POLICY_PATH.read_text().splitlines()
    section = lines[lines.index("rollout:") :]
    knobs = [n for n, line in enumerate(section) if re.match(r"\s+\w+: \S", line)]
    assert len(knobs) == 2 + 3 + 3 + 1 + 7  # shadow, canary, guard, confidence, slo
    for number in knobs:
        assert section[number - 1].lstrip().startswith("#"), section[number]


def test_the_new_labels_section_is_documented_and_checked():
    policy = load_promotion_policy()
    assert policy.new_labels.min_frames == 200  # the default
    lines = DEFAULT_PROMOTION_POLICY_PATH.read_text().splitlines()
    at = lines.index("new_labels:")
    assert lines[at - 1].startswith("#")
    assert lines[at + 1].lstrip().startswith("#")  # the knob's own comment, right above it
    assert lines[at + 2] == "  min_frames: 200"
    assert (
        parse_promotion_policy({**MINIMAL, "new_labels": {"min_frames": 5}}).new_labels.min_frames
        == 5
    )
    for bad, message in (
        (0, "must be >= 1, got 0"),
        (True, "must be an integer, got True"),  # a boolean is no count
        (2.5, "must be an integer, got 2.5"),
    ):
        with pytest.raises(PolicyError, match=r"'new_labels\.min_frames'") as caught:
            parse_promotion_policy({**MINIMAL, "new_labels": {"min_frames": bad}})
        assert message in str(caught.value)
    with pytest.raises(PolicyError, match="new_labels"):
        parse_promotion_policy({**MINIMAL, "new_labels": {"min_frame": 5}})  # a typo


def test_a_partial_rollout_section_keeps_the_other_defaults():
    policy = parse_promotion_policy({**MINIMAL, "rollout": {"canary": {"share": 0.1}}})
    assert policy.rollout.canary.share == 0.1
    assert policy.rollout.canary.min_frames == 100
    assert policy.rollout.guard.shadow_share == 0.25
    assert parse_promotion_policy({**MINIMAL, "rollout": {"canary": {"share": 0.01}}})


def test_a_null_key_counts_as_absent(tmp_path):
    path = write_policy(
        tmp_path,
        "version: 3\nmin_map50: 0.5\nmin_map50_95: 0.3\nmax_p95_latency_ms: 40\n"
        "map_tolerance:\nretention:\n  keep_last:\n  archive: delete\n",
    )
    policy = load_promotion_policy(path)
    assert policy.version == "3"  # a number in YAML is read as the version's text
    assert policy.map_tolerance == 0.02
    assert policy.retention_keep_last == 10
    assert policy.retention_archive == "delete"
    with pytest.raises(PolicyError, match="missing key 'min_map50'"):
        parse_promotion_policy({**MINIMAL, "min_map50": None})


def test_overrides_merge_into_the_file_and_take_form_text():
    policy = load_promotion_policy(
        overrides={
            "bootstrap": {"confidence": "0.9", "n_resamples": None},
            "retention": {},
            "auto_retrain": "False",
            "min_map50": "",
        }
    )
    shipped = load_promotion_policy()
    assert policy.bootstrap_confidence == 0.9
    # an empty value at any depth keeps the file's value
    assert policy.bootstrap_n_resamples == shipped.bootstrap_n_resamples
    assert policy.min_map50 == shipped.min_map50
    assert policy.retention == shipped.retention
    assert policy.auto_retrain is False
    assert policy.version == f"{shipped.version}+override"
    assert load_promotion_policy(overrides={"bootstrap": {"confidence": None}}) == shipped


def test_the_policy_is_immutable():
    policy = load_promotion_policy()
    with pytest.raises(ValidationError, match="frozen"):
        policy.map_tolerance = 0.5  # type: ignore[misc]


def test_choices_match_what_the_gate_and_the_evaluation_know():
    fields = PromotionPolicy.model_fields
    assert typing.get_args(fields["primary_metric"].annotation) == PRIMARY_METRICS == METRICS
    assert typing.get_args(fields["promote_to"].annotation) == PROMOTE_TARGETS
    assert typing.get_args(fields["approval"].annotation) == APPROVAL_MODES
    retention = fields["retention"].annotation
    assert typing.get_args(retention.model_fields["archive"].annotation) == ARCHIVE_MODES
    # the gate re-exports the policy's names for the retrain steps and DAG
    assert gate.PromotionPolicy is PromotionPolicy
    assert gate.load_promotion_policy is load_promotion_policy
    assert gate.DEFAULT_PROMOTION_POLICY_PATH == DEFAULT_PROMOTION_POLICY_PATH


def test_every_field_has_a_description_a_form_can_show():
    def walk(model: type[BaseModel], prefix: str = ""):
        for name, info in model.model_fields.items():
            yield prefix + name, info
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                yield from walk(info.annotation, f"{prefix}{name}.")

    described = dict(walk(PromotionPolicy))
    assert "bootstrap.confidence" in described
    assert "retention.archive" in described
    for key, info in described.items():
        assert info.description, key
        assert len(info.description) > 20, key


# --------------------------------------------------------------------------------------------
# errors name the file and the key path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # wrong type
        ({"map_tolerance": [0.1]}, r"'map_tolerance' must be a number, got \[0.1\]"),
        ({"latency_tolerance": False}, "'latency_tolerance' must be a number, got False"),
        ({"max_p95_latency_ms": "inf"}, "'max_p95_latency_ms' must be finite, got 'inf'"),
        ({"bootstrap": {"n_resamples": "many"}}, "'bootstrap.n_resamples' must be an integer"),
        ({"bootstrap": {"n_resamples": True}}, "'bootstrap.n_resamples' must be an integer"),
        ({"auto_retrain": 1}, "'auto_retrain' must be true or false, got 1"),
        ({"auto_retrain": "on"}, "'auto_retrain' must be true or false, got 'on'"),
        ({"bootstrap": 0.95}, "'bootstrap' must be a mapping, got 0.95"),
        ({"version": "  "}, "'version' must be a non-empty string"),
        ({"version": True}, "'version' must be a non-empty string, got True"),
        # out of range: the violated bound, the value, and the whole range where there is one
        ({"min_map50_95": -0.1}, r"'min_map50_95' must be >= 0, got -0.1 \(allowed: \[0, 1\]\)"),
        ({"int8_max_map_loss": 2}, r"'int8_max_map_loss' must be <= 1, got 2 \(allowed"),
        ({"max_p95_latency_ms": -5}, "'max_p95_latency_ms' must be > 0, got -5$"),
        ({"bootstrap": {"confidence": 0.4}}, r"must be >= 0.5, got 0.4 \(allowed: \[0.5, 1\)\)"),
        ({"bootstrap": {"confidence": 1}}, "'bootstrap.confidence' must be < 1, got 1"),
        ({"slices": {"min_images": 0}}, "'slices.min_images' must be >= 1, got 0"),
        ({"slices": {"tolerance": -0.01}}, "'slices.tolerance' must be >= 0"),
        ({"slices": {"confidence": 1}}, "'slices.confidence' must be < 1, got 1"),
        ({"retention": {"keep_last": -3}}, "'retention.keep_last' must be >= 1, got -3"),
        # not one of the choices
        ({"retention": {"archive": "purge"}}, "must be one of 'tag' or 'delete', got 'purge'"),
        ({"promote_to": "prod"}, "'promote_to' must be one of 'champion' or 'challenger'"),
        # unknown keys, with what is known there
        ({"bootstrap": {"level": 0.9}}, r"unknown key 'bootstrap.level' \(known: \['confidence'"),
        ({"min_map": 0.5}, r"unknown key 'min_map' \(known: \['approval'"),
        ({"source": "elsewhere"}, "unknown key 'source'"),
        # the rollout section: paths through the nested stages
        (
            {"rollout": {"canary": {"share": 0.2}}},
            r"'rollout.canary.share' must be <= 0.1, got 0.2 \(allowed: \[0.01, 0.1\]\)",
        ),
        ({"rollout": {"canary": {"share": 0.005}}}, "'rollout.canary.share' must be >= 0.01"),
        ({"rollout": {"guard": {"shadow_share": 0}}}, "'rollout.guard.shadow_share' must be > 0"),
        ({"rollout": {"guard": {"hours": -1}}}, "'rollout.guard.hours' must be > 0, got -1"),
        ({"rollout": {"shadow": {"min_frames": True}}}, "'rollout.shadow.min_frames' must be an"),
        ({"rollout": {"slo": {"min_agreement": 1.5}}}, "'rollout.slo.min_agreement' must be <= 1"),
        ({"rollout": {"confidence": 1}}, "'rollout.confidence' must be < 1, got 1"),
        ({"rollout": {"slo": {"p95": 0.1}}}, r"unknown key 'rollout.slo.p95' \(known: \["),
        ({"rollout": {"canary": 0.05}}, "'rollout.canary' must be a mapping, got 0.05"),
    ],
)
def test_a_bad_value_is_named_by_its_key_path(change, message):
    with pytest.raises(PolicyError, match=message) as caught:
        parse_promotion_policy({**MINIMAL, **change}, source="policy.yaml")
    assert str(caught.value).startswith("policy.yaml: ")


def test_every_problem_of_a_file_is_reported_with_the_file(tmp_path):
    path = write_policy(
        tmp_path,
        "version: '7'\nmin_map50: 1.5\nmax_p95_latency_ms: 0\napproval: later\n",
    )
    with pytest.raises(PolicyError) as caught:
        load_promotion_policy(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    for part in (
        "'min_map50' must be <= 1, got 1.5",
        "missing key 'min_map50_95'",
        "'max_p95_latency_ms' must be > 0, got 0",
        "'approval' must be one of 'none' or 'required', got 'later'",
    ):
        assert part in text
    assert text.count("; ") == 3


def test_a_bad_override_names_the_policy_file():
    with pytest.raises(PolicyError, match=r"promotion_policy\.yaml: 'map_tolerance' must be >= 0"):
        load_promotion_policy(overrides={"map_tolerance": -1})


def test_unreadable_documents_name_the_file(tmp_path):
    broken = write_policy(tmp_path, "version: [1\n")
    with pytest.raises(PolicyError, match=f"{broken}: not valid YAML"):
        load_promotion_policy(broken)
    with pytest.raises(PolicyError, match="<dict>: promotion policy must be a mapping, got 3"):
        parse_promotion_policy(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# what a manual trigger may override


def test_trigger_fields_carry_type_default_and_description():
    policy = load_promotion_policy()
    fields = {f.param: f for f in trigger_overridable_fields(policy)}
    assert list(fields) == ["_".join(path) for path in TRIGGER_OVERRIDABLE]
    # the run's version, the drift feature flag and registry housekeeping are not per-run knobs
    assert not {"version", "auto_retrain", "retention_keep_last"} & set(fields)
    confidence = fields["bootstrap_confidence"]
    assert confidence.path == ("bootstrap", "confidence")
    assert confidence.type == "number"
    assert confidence.default == policy.bootstrap_confidence
    assert confidence.json_schema == {"type": "number", "minimum": 0.5, "exclusiveMaximum": 1}
    assert fields["bootstrap_n_resamples"].type == "integer"
    assert fields["promote_to"].json_schema["enum"] == list(PROMOTE_TARGETS)
    assert fields["max_p95_latency_ms"].json_schema["exclusiveMinimum"] == 0
    assert fields["min_map50"].default == policy.min_map50
    for f in fields.values():
        assert f.description == _description(f.path), f.param
        assert f.to_dict()["path"] == ".".join(f.path)


def _description(path):
    model = PromotionPolicy
    for name in path[:-1]:
        model = model.model_fields[name].annotation
    return model.model_fields[path[-1]].description


def test_trigger_fields_without_a_policy_show_the_model_defaults():
    fields = {f.param: f for f in trigger_overridable_fields()}
    assert fields["map_tolerance"].default == 0.02
    assert fields["bootstrap_n_resamples"].default == 1000
    # the floors have no default: the file must set them
    assert fields["min_map50"].default is None
    assert fields["max_p95_latency_ms"].default is None


def test_each_trigger_field_overrides_its_key_and_only_it():
    shipped = load_promotion_policy()
    changed = {
        "primary_metric": "map50",
        "map_tolerance": 0.05,
        "latency_tolerance": 0.2,
        "int8_max_map_loss": 0.03,
        "min_map50": 0.6,
        "min_map50_95": 0.35,
        "max_p95_latency_ms": 45.0,
        "promote_to": "challenger",
        "approval": "required",
        "bootstrap_n_resamples": 500,
        "bootstrap_confidence": 0.9,
        "latency_rounds": 400,
        "latency_confidence": 0.9,
        "latency_same_graph_tolerance": 0.25,
    }
    assert set(changed) == {f.param for f in trigger_overridable_fields()}
    for f in trigger_overridable_fields(shipped):
        assert changed[f.param] != f.default, f.param
        policy = load_promotion_policy(overrides=promotion_overrides({f.param: changed[f.param]}))
        differs = {
            key for key, value in policy.to_dict().items() if value != shipped.to_dict()[key]
        }
        assert differs == {"version", f.path[0]}, f.param
        node = policy
        for name in f.path:
            node = getattr(node, name)
        assert node == changed[f.param]


def test_empty_params_and_other_params_override_nothing():
    assert promotion_overrides(None) == {}
    assert promotion_overrides({"map_tolerance": None, "approval": "", "epochs": 3}) == {}
    assert promotion_overrides({"bootstrap_confidence": 0.9, "min_map50": 0.6}) == {
        "bootstrap": {"confidence": 0.9},
        "min_map50": 0.6,
    }
