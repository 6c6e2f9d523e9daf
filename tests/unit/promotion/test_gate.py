"""Promotion policy parsing and the gate's rules, edge by edge."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from driftloop.evaluation.bootstrap import DeltaCI
from driftloop.promotion.gate import (
    DEFAULT_PROMOTION_POLICY_PATH,
    EvalSummary,
    PolicyError,
    decide_promotion,
    load_promotion_policy,
    parse_promotion_policy,
)

NAN = float("nan")


@pytest.fixture
def policy():
    # pinned numbers, independent of later edits to the shipped file
    return load_promotion_policy(
        DEFAULT_PROMOTION_POLICY_PATH,
        {
            "map_tolerance": 0.02,
            "latency_tolerance": 0.10,
            "int8_max_map_loss": 0.01,
            "min_map50": 0.50,
            "min_map50_95": 0.30,
            "max_p95_latency_ms": 50.0,
            "primary_metric": "map50_95",
            "promote_to": "champion",
            "approval": "none",
        },
    )


def champion(**kw):
    base = EvalSummary(
        map50=0.78,
        map50_95=0.48,
        map50_int8=0.775,
        p95_latency_ms=20.0,
        p50_latency_ms=12.0,
        n_images=300,
    )
    return replace(base, **kw)


def candidate(**kw):
    base = EvalSummary(
        map50=0.80,
        map50_95=0.50,
        map50_int8=0.795,
        p95_latency_ms=20.5,
        p50_latency_ms=12.5,
        n_images=300,
    )
    return replace(base, **kw)


def delta(low=0.005, **kw):
    return DeltaCI(
        **{
            "point": 0.02,
            "low": low,
            "high": 0.035,
            "n_images": 300,
            "n_resamples": 1000,
            "metric": "map50_95",
            **kw,
        }
    )


def check(decision, name):
    (found,) = [c for c in decision.checks if c.name == name]
    return found


# --------------------------------------------------------------------------------------------
# policy


def test_shipped_policy_loads_with_documented_keys():
    p = load_promotion_policy()
    assert p.version
    assert "+override" not in p.version
    assert p.primary_metric == "map50_95"
    assert p.map_tolerance == 0.02
    assert p.latency_tolerance == 0.10
    assert p.int8_max_map_loss == 0.01
    assert p.promote_to in ("champion", "challenger")
    assert p.approval in ("none", "required")
    assert p.auto_retrain is True
    assert (p.retention_keep_last, p.retention_archive) == (10, "tag")
    assert (p.bootstrap_n_resamples, p.bootstrap_confidence) == (1000, 0.95)
    assert set(p.to_dict()) >= {"min_map50", "min_map50_95", "max_p95_latency_ms", "retention"}


def test_defaults_apply_when_optional_keys_are_absent():
    p = parse_promotion_policy(
        {"version": "1", "min_map50": 0.1, "min_map50_95": 0.05, "max_p95_latency_ms": 100}
    )
    assert (p.map_tolerance, p.latency_tolerance, p.int8_max_map_loss) == (0.02, 0.10, 0.01)
    assert p.auto_retrain is True
    assert p.promote_to == "champion"
    assert p.approval == "none"
    assert p.retention_keep_last == 10
    assert p.bootstrap_n_resamples == 1000


def test_overrides_mark_the_version(policy):
    assert policy.version.endswith("+override")
    assert not load_promotion_policy(overrides={"map_tolerance": None}).version.endswith(
        "+override"
    )
    flag = load_promotion_policy(overrides={"auto_retrain": "false"})
    assert flag.auto_retrain is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"map_tolerance": -0.01}, "'map_tolerance' must be >= 0"),
        ({"map_tolerance": "lots"}, "'map_tolerance' must be a number"),
        ({"latency_tolerance": float("nan")}, "'latency_tolerance' must be finite"),
        ({"int8_max_map_loss": True}, "'int8_max_map_loss' must be a number"),
        ({"min_map50": 1.5}, "'min_map50' must be <= 1"),
        ({"max_p95_latency_ms": 0}, "'max_p95_latency_ms' must be > 0"),
        ({"primary_metric": "map75"}, "'primary_metric' must be one of"),
        ({"promote_to": "production"}, "'promote_to' must be one of"),
        ({"approval": "maybe"}, "'approval' must be one of"),
        ({"auto_retrain": "yes"}, "'auto_retrain' must be true or false"),
        ({"retention": {"keep_last": 0}}, "'retention.keep_last' must be >= 1"),
        ({"retention": {"keep_last": 2.5}}, "'retention.keep_last' must be an integer"),
        ({"retention": {"archive": "shred"}}, "'retention.archive' must be one of"),
        ({"retention": {"keep": 3}}, "unknown key 'retention.keep'"),
        (
            {"bootstrap": {"confidence": 1.2}},
            r"'bootstrap.confidence' must be < 1, got 1.2 \(allowed: \[0.5, 1\)\)",
        ),
        ({"bootstrap": {"n_resamples": 10}}, "'bootstrap.n_resamples' must be >= 100"),
        ({"map_tolerence": 0.03}, "unknown key 'map_tolerence'"),
    ],
)
def test_bad_policy_names_the_key(override, message):
    with pytest.raises(PolicyError, match=message):
        load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH, override)


def test_missing_required_key_and_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="missing key 'min_map50_95'"):
        parse_promotion_policy({"version": "1", "min_map50": 0.1, "max_p95_latency_ms": 9})
    with pytest.raises(PolicyError, match="not found"):
        load_promotion_policy(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(PolicyError, match="must be a mapping"):
        load_promotion_policy(bad)


# --------------------------------------------------------------------------------------------
# decisions


def test_a_clearly_better_candidate_is_promoted(policy):
    d = decide_promotion(candidate(), champion(), delta(), policy)
    assert d.promote
    assert d.target_alias == "champion"
    assert d.reasons == []
    assert [c.name for c in d.checks] == [
        "evaluation_set",
        "map_delta",
        "p95_latency",
        "int8_loss",
        "floor_map50",
        "floor_map50_95",
        "floor_p95_latency_ms",
    ]
    assert all(c.passed for c in d.checks)


@pytest.mark.parametrize(
    ("low", "passes"), [(-0.02, True), (-0.019, True), (-0.0201, False), (-0.020001, False)]
)
def test_delta_lower_bound_edge(policy, low, passes):
    d = decide_promotion(candidate(), champion(), delta(low=low), policy)
    assert check(d, "map_delta").passed is passes
    assert d.promote is passes
    if not passes:
        assert any(r.startswith("map_delta") for r in d.reasons)


@pytest.mark.parametrize(
    ("champ_p95", "cand_p95", "passes"),
    [(20.0, 22.0, True), (10.0, 11.0, True), (20.0, 22.001, False), (20.0, 25.0, False)],
)
def test_latency_tolerance_edge(policy, champ_p95, cand_p95, passes):
    d = decide_promotion(
        candidate(p95_latency_ms=cand_p95), champion(p95_latency_ms=champ_p95), delta(), policy
    )
    assert check(d, "p95_latency").passed is passes
    assert d.promote is passes


@pytest.mark.parametrize(
    ("fp32", "int8", "passes"),
    [(0.80, 0.79, True), (0.80, 0.80, True), (0.80, 0.7899, False), (0.80, 0.70, False)],
)
def test_int8_loss_edge(policy, fp32, int8, passes):
    d = decide_promotion(candidate(map50=fp32, map50_int8=int8), champion(), delta(), policy)
    assert check(d, "int8_loss").passed is passes
    assert check(d, "int8_loss").value == pytest.approx(fp32 - int8)
    assert d.promote is passes


@pytest.mark.parametrize(
    ("field", "value", "name", "passes"),
    [
        ("map50", 0.50, "floor_map50", True),
        ("map50", 0.4999, "floor_map50", False),
        ("map50_95", 0.30, "floor_map50_95", True),
        ("map50_95", 0.2999, "floor_map50_95", False),
        ("p95_latency_ms", 50.0, "floor_p95_latency_ms", True),
        ("p95_latency_ms", 50.01, "floor_p95_latency_ms", False),
    ],
)
def test_floors_without_a_champion(policy, field, value, name, passes):
    cand = candidate(**{field: value, "map50_int8": 0.0})  # INT8 loss is not a floor
    d = decide_promotion(cand, None, None, policy)
    assert check(d, name).passed is passes
    assert d.promote is passes
    assert not d.has_champion


def test_no_champion_path_is_floors_only(policy):
    d = decide_promotion(candidate(map50_int8=NAN), None, None, policy)
    assert d.promote
    assert d.target_alias == "champion"
    assert [c.name for c in d.checks] == [
        "evaluation_set",
        "floor_map50",
        "floor_map50_95",
        "floor_p95_latency_ms",
    ]


def test_floors_also_bind_against_a_champion(policy):
    weak_champ = champion(map50=0.40, map50_95=0.20, map50_int8=0.40)
    d = decide_promotion(candidate(map50_95=0.25), weak_champ, delta(), policy)
    assert not d.promote
    assert [r.split(":")[0] for r in d.reasons] == ["floor_map50_95"]


@pytest.mark.parametrize(
    ("cand", "champ", "dlt", "failing"),
    [
        (candidate(map50_95=NAN), champion(), delta(), "floor_map50_95"),
        (candidate(map50=None), champion(), delta(), "int8_loss"),
        (candidate(map50_int8=NAN), champion(), delta(), "int8_loss"),
        (candidate(p95_latency_ms=NAN), champion(), delta(), "p95_latency"),
        (candidate(), champion(p95_latency_ms=NAN), delta(), "p95_latency"),
        (candidate(), champion(p95_latency_ms=0.0), delta(), "p95_latency"),
        (candidate(), champion(), delta(low=NAN), "map_delta"),
        (candidate(), champion(), None, "map_delta"),
        (candidate(), champion(), delta(metric="map50"), "map_delta"),
        (candidate(), champion(), delta(confidence=0.80), "map_delta"),
        (candidate(), champion(n_images=250), delta(), "evaluation_set"),
        (candidate(), champion(), delta(n_images=299), "evaluation_set"),
        (candidate(n_images=0), None, None, "evaluation_set"),
        (candidate(n_images=None), champion(), delta(), "evaluation_set"),
    ],
)
def test_missing_or_nan_evidence_fails_closed(policy, cand, champ, dlt, failing):
    d = decide_promotion(cand, champ, dlt, policy)
    assert not d.promote
    assert d.target_alias is None
    assert check(d, failing).passed is False
    assert any(r.startswith(f"{failing}:") for r in d.reasons)


def test_target_alias_and_approval_follow_the_policy(policy):
    challenger = parse_promotion_policy(
        {**policy.to_dict(), "promote_to": "challenger", "approval": "required"}
    )
    d = decide_promotion(candidate(), champion(), delta(), challenger)
    assert d.promote
    assert d.target_alias == "challenger"
    assert d.requires_approval
    rejected = decide_promotion(candidate(), champion(), delta(low=-0.5), challenger)
    assert rejected.target_alias is None
    assert not rejected.requires_approval


def test_to_dict_is_strict_json(policy):
    d = decide_promotion(candidate(map50_95=NAN), champion(), delta(high=NAN), policy)
    doc = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert doc["verdict"] == "reject"
    assert doc["promote"] is False
    assert doc["evidence"]["candidate"]["map50_95"] is None
    assert doc["evidence"]["delta"]["high"] is None
    assert doc["policy_version"] == policy.version
    assert {c["name"] for c in doc["checks"]} >= {"map_delta", "floor_map50_95"}


def test_table_renders_fixed_width(policy):
    d = decide_promotion(candidate(p95_latency_ms=30.0), champion(), delta(low=NAN), policy)
    text = d.table()
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["check", "result", "value", "rule", "threshold"]
    body = lines[2:-1]
    assert len(body) == len(d.checks)
    result_col = lines[0].index("result")
    for line, c in zip(body, d.checks, strict=True):
        assert line.startswith(c.name)
        assert line[result_col : result_col + 4] == ("PASS" if c.passed else "FAIL")
    assert "n/a" in text
    assert lines[-1].startswith("decision: REJECT (2 failed)")
    ok = decide_promotion(candidate(), champion(), delta(), policy).table()
    assert ok.splitlines()[-1].startswith("decision: PROMOTE -> champion")


def test_check_values_are_reported(policy):
    d = decide_promotion(candidate(), champion(), delta(low=-0.01), policy)
    c = check(d, "map_delta")
    assert (c.value, c.threshold, c.op) == (-0.01, -0.02, ">=")
    lat = check(d, "p95_latency")
    assert lat.threshold == pytest.approx(22.0)
    assert lat.value == 20.5
    assert math.isclose(check(d, "int8_loss").value, 0.005)
