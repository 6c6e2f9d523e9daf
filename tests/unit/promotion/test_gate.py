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
    LatencyComparison,
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
            "latency": {"rounds": 200, "confidence": 0.95, "same_graph_tolerance": 0.5},
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


#: graph signatures as evaluate records them (only what the gate reads)
GRAPH_160 = {"fingerprint": "a" * 64, "flops": 394_716_800, "macs_complete": True, "n_nodes": 704}
GRAPH_224 = {"fingerprint": "b" * 64, "flops": 774_096_512, "macs_complete": True, "n_nodes": 704}


def latency(low=0.97, high=1.04, ratio=1.003, graph=GRAPH_160, **kw):
    """A paired comparison; the champion's graph is ``GRAPH_160``, the candidate's ``graph``."""
    return LatencyComparison(
        **{
            "ratio": ratio,
            "low": low,
            "high": high,
            "confidence": 0.95,
            "rounds": 200,
            "n_resamples": 2000,
            "block_rounds": 6,
            "seed": 0,
            "candidate": {"p50_ms": 12.5, "p95_ms": 20.5, "mean_ms": 13.0, "n": 400},
            "champion": {"p50_ms": 12.0, "p95_ms": 20.0, "mean_ms": 12.6, "n": 400},
            "candidate_graph": graph,
            "champion_graph": GRAPH_160,
            **kw,
        }
    )


def no_cameras(n, metric="map50_95"):
    """Per-camera evidence of an evaluation set whose images have no camera (the
    ``camera_slices`` check passes with nothing to judge; see test_gate_slices.py)."""
    return {"by": "camera_id", "metric": metric, "slices": [], "unattributed": n}


def decide(cand, champ, dlt, policy, latency=None, *, slices=None):
    """decide_promotion with per-camera evidence that judges no camera (unless given)."""
    if slices is None and champ is not None:
        slices = no_cameras(cand.n_images, policy.primary_metric)
    return decide_promotion(cand, champ, dlt, policy, latency, slices=slices)


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
    assert (p.latency_rounds, p.latency_confidence, p.latency_same_graph_tolerance) == (
        150,
        0.95,
        0.5,
    )
    assert set(p.to_dict()) >= {"min_map50", "min_map50_95", "max_p95_latency_ms", "retention"}
    assert p.to_dict()["latency"] == {
        "rounds": 150,
        "confidence": 0.95,
        "same_graph_tolerance": 0.5,
    }


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
        ({"latency": {"rounds": 5}}, "'latency.rounds' must be >= 20"),
        ({"latency": {"confidence": 1.0}}, "'latency.confidence' must be < 1"),
        (
            {"latency": {"same_graph_tolerance": -0.1}},
            "'latency.same_graph_tolerance' must be >= 0",
        ),
        ({"latency": {"tolerance": 0.1}}, "unknown key 'latency.tolerance'"),
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
    d = decide(candidate(), champion(), delta(), policy, latency())
    assert d.promote
    assert d.target_alias == "champion"
    assert d.reasons == []
    assert [c.name for c in d.checks] == [
        "evaluation_set",
        "map_delta",
        "p95_latency",
        "int8_loss",
        "camera_slices",
        "floor_map50",
        "floor_map50_95",
        "floor_p95_latency_ms",
    ]
    assert all(c.passed for c in d.checks)


@pytest.mark.parametrize(
    ("low", "passes"), [(-0.02, True), (-0.019, True), (-0.0201, False), (-0.020001, False)]
)
def test_delta_lower_bound_edge(policy, low, passes):
    d = decide(candidate(), champion(), delta(low=low), policy, latency())
    assert check(d, "map_delta").passed is passes
    assert d.promote is passes
    if not passes:
        assert any(r.startswith("map_delta") for r in d.reasons)


@pytest.mark.parametrize(
    ("low", "high", "passes"),
    [
        (1.10, 1.30, True),  # the interval reaches the tolerance: not proven slower
        (0.95, 1.40, True),  # a wide, noisy interval never rejects
        (1.1001, 1.30, False),  # the whole interval above 1 + 0.10
        (1.60, 1.90, False),
    ],
)
def test_a_different_graph_is_rejected_only_when_the_whole_interval_lies_above(
    policy, low, high, passes
):
    d = decide(
        candidate(), champion(), delta(), policy, latency(low=low, high=high, graph=GRAPH_224)
    )
    lat = check(d, "p95_latency")
    assert lat.passed is passes
    assert (lat.value, lat.threshold, lat.op) == (low, pytest.approx(1.10), "<=")
    assert d.promote is passes
    assert "different graph (0.77 vs 0.39 GFLOPs, 1.96x the champion's FLOPs)" in lat.detail


def test_point_estimates_alone_never_reject(policy):
    """The incident: 3.5245 against 3.5185 ms rejected a clearly better candidate. Now the
    numbers that decide are the interval's, and the p95s of the summaries play no part."""
    d = decide(
        candidate(p95_latency_ms=3.5245),
        champion(p95_latency_ms=3.5185),
        delta(),
        policy.model_copy(update={"latency_tolerance": 0.0}),
        latency(ratio=3.5245 / 3.5185, low=0.985, high=1.02, graph=GRAPH_224),
    )
    assert check(d, "p95_latency").passed
    assert d.promote
    # and a candidate whose summary p95 looks 25 % slower passes when the paired interval
    # says it is not slower than the tolerance
    d = decide(
        candidate(p95_latency_ms=25.0), champion(p95_latency_ms=20.0), delta(), policy,
        latency(low=1.02, high=1.31, graph=GRAPH_224),
    )  # fmt: skip
    assert check(d, "p95_latency").passed


@pytest.mark.parametrize(
    ("low", "same_graph_tolerance", "passes"),
    [
        (1.20, 0.5, True),  # above 1 + latency_tolerance, but the same arithmetic: noise
        (1.50, 0.5, True),
        (1.5001, 0.5, False),  # a gross slowdown (e.g. denormals) is still caught
        (1.20, 0.0, False),  # same_graph_tolerance below latency_tolerance: the larger applies
        (1.10, 0.0, True),
    ],
)
def test_a_same_graph_candidate_is_held_to_the_same_graph_tolerance(
    policy, low, same_graph_tolerance, passes
):
    policy = policy.model_copy(
        update={
            "latency": policy.latency.model_copy(
                update={"same_graph_tolerance": same_graph_tolerance}
            )
        }
    )
    d = decide(candidate(), champion(), delta(), policy, latency(low=low, high=2.0))
    lat = check(d, "p95_latency")
    assert lat.passed is passes
    assert lat.threshold == pytest.approx(1.0 + max(0.10, same_graph_tolerance))
    assert "same graph as the champion (signature aaaaaaaaaaaa, 0.39 GFLOPs)" in lat.detail
    assert "a difference can only be noise" in lat.detail


def test_unknown_graphs_are_held_to_the_latency_tolerance(policy):
    d = decide(
        candidate(), champion(), delta(), policy,
        latency(low=1.2, high=1.3, graph=None, champion_graph=None),
    )  # fmt: skip
    lat = check(d, "p95_latency")
    assert not lat.passed
    assert lat.threshold == pytest.approx(1.10)
    assert "graph signatures unknown" in lat.detail


def test_the_latency_detail_says_ratio_interval_rounds_and_verdict(policy):
    lat = check(decide(candidate(), champion(), delta(), policy, latency()), "p95_latency")
    assert lat.detail.startswith(
        "p95 ratio candidate/champion 1.003, 95% CI [0.970, 1.040], 200 paired rounds; "
        "interval not wholly above 1.50; same graph"
    )
    slow = latency(ratio=1.7, low=1.6, high=1.8, graph=GRAPH_224)
    lat = check(decide(candidate(), champion(), delta(), policy, slow), "p95_latency")
    assert "interval wholly above 1.10; different graph" in lat.detail


@pytest.mark.parametrize(
    ("comparison", "message"),
    [
        (None, "no paired latency comparison of candidate and champion"),
        (latency(rounds=100), "latency timed in 100 paired rounds, the policy asks for 200"),
        (latency(confidence=0.99), "latency interval at 0.99 confidence, wider than the policy's"),
        (latency(confidence=NAN), "latency interval at nan confidence"),
        (latency(low=NAN), "p95 ratio or its interval missing or NaN"),
        (latency(high=NAN), "p95 ratio or its interval missing or NaN"),
        (latency(ratio=NAN), "p95 ratio or its interval missing or NaN"),
    ],
)
def test_a_missing_or_weaker_latency_comparison_fails_closed(policy, comparison, message):
    d = decide(candidate(), champion(), delta(), policy, comparison)
    lat = check(d, "p95_latency")
    assert not lat.passed
    assert message in lat.detail
    assert not d.promote


def test_a_narrower_interval_than_the_policys_is_accepted(policy):
    d = decide(candidate(), champion(), delta(), policy, latency(confidence=0.9))
    assert check(d, "p95_latency").passed


def test_the_comparison_from_the_ledger_decides_alike_and_is_evidence(policy):
    comparison = latency(low=1.2, high=1.4, graph=GRAPH_224)
    stored = json.loads(json.dumps(comparison.to_dict(), allow_nan=False))
    assert stored["same_graph"] is False
    assert stored["flops_ratio"] == pytest.approx(774_096_512 / 394_716_800)
    from_ledger = decide(candidate(), champion(), delta(), policy, stored)
    direct = decide(candidate(), champion(), delta(), policy, comparison)
    assert from_ledger.to_dict()["checks"] == direct.to_dict()["checks"]
    assert from_ledger.evidence["latency"]["low"] == 1.2
    assert from_ledger.evidence["latency"]["candidate_graph"]["fingerprint"] == "b" * 64
    # a ledger row that lost its numbers is refused, never read as a pass
    broken = decide(candidate(), champion(), delta(), policy, {"rounds": 200})
    assert not check(broken, "p95_latency").passed


def test_without_a_champion_no_comparison_is_needed(policy):
    d = decide(candidate(), None, None, policy)
    assert d.promote
    assert d.evidence["latency"] is None


@pytest.mark.parametrize(
    ("fp32", "int8", "passes"),
    [(0.80, 0.79, True), (0.80, 0.80, True), (0.80, 0.7899, False), (0.80, 0.70, False)],
)
def test_int8_loss_edge(policy, fp32, int8, passes):
    d = decide(candidate(map50=fp32, map50_int8=int8), champion(), delta(), policy, latency())
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
    d = decide(cand, None, None, policy)
    assert check(d, name).passed is passes
    assert d.promote is passes
    assert not d.has_champion


def test_no_champion_path_is_floors_only(policy):
    d = decide(candidate(map50_int8=NAN), None, None, policy)
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
    d = decide(candidate(map50_95=0.25), weak_champ, delta(), policy, latency())
    assert not d.promote
    assert [r.split(":")[0] for r in d.reasons] == ["floor_map50_95"]


@pytest.mark.parametrize(
    ("cand", "champ", "dlt", "failing"),
    [
        (candidate(map50_95=NAN), champion(), delta(), "floor_map50_95"),
        (candidate(map50=None), champion(), delta(), "int8_loss"),
        (candidate(map50_int8=NAN), champion(), delta(), "int8_loss"),
        (candidate(p95_latency_ms=NAN), champion(), delta(), "floor_p95_latency_ms"),
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
    d = decide(cand, champ, dlt, policy, latency())
    assert not d.promote
    assert d.target_alias is None
    assert check(d, failing).passed is False
    assert any(r.startswith(f"{failing}:") for r in d.reasons)


def test_target_alias_and_approval_follow_the_policy(policy):
    challenger = parse_promotion_policy(
        {**policy.to_dict(), "promote_to": "challenger", "approval": "required"}
    )
    d = decide(candidate(), champion(), delta(), challenger, latency())
    assert d.promote
    assert d.target_alias == "challenger"
    assert d.requires_approval
    rejected = decide(candidate(), champion(), delta(low=-0.5), challenger, latency())
    assert rejected.target_alias is None
    assert not rejected.requires_approval


def test_without_a_champion_a_challenger_policy_promotes_to_champion(policy):
    # a rollout compares the challenger with the champion: with none, the first model serves
    challenger = parse_promotion_policy({**policy.to_dict(), "promote_to": "challenger"})
    d = decide(candidate(), None, None, challenger)
    assert d.promote
    assert d.target_alias == "champion"


def test_to_dict_is_strict_json(policy):
    d = decide(candidate(map50_95=NAN), champion(), delta(high=NAN), policy, latency())
    doc = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert doc["verdict"] == "reject"
    assert doc["promote"] is False
    assert doc["evidence"]["candidate"]["map50_95"] is None
    assert doc["evidence"]["delta"]["high"] is None
    assert doc["policy_version"] == policy.version
    assert {c["name"] for c in doc["checks"]} >= {"map_delta", "floor_map50_95"}


def test_table_renders_fixed_width(policy):
    d = decide(candidate(p95_latency_ms=30.0), champion(), delta(low=NAN), policy, latency(low=1.6))
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
    ok = decide(candidate(), champion(), delta(), policy, latency()).table()
    assert ok.splitlines()[-1].startswith("decision: PROMOTE -> champion")


def test_check_values_are_reported(policy):
    d = decide(candidate(), champion(), delta(low=-0.01), policy, latency())
    c = check(d, "map_delta")
    assert (c.value, c.threshold, c.op) == (-0.01, -0.02, ">=")
    lat = check(d, "p95_latency")
    assert (lat.value, lat.op) == (0.97, "<=")  # the interval's lower bound
    assert lat.threshold == pytest.approx(1.5)  # same graph: 1 + same_graph_tolerance
    assert math.isclose(check(d, "int8_loss").value, 0.005)
