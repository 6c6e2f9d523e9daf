"""What the rollout guard does next (driftloop.promotion.rollout.next_action) for every stage and
verdict, and what each transition builds (driftloop.promotion.rollout_transitions): the next
routing document, the alias move, the tags — from the document and aliases the decision saw,
refused when they moved. The stores are a moto S3 bucket and a registry stub that answers
``get_registered_model`` (the transactions against a real MLflow server are the integration
tests' business)."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest

from driftloop.config.promotion_policy import load_promotion_policy
from driftloop.promotion import rollout
from driftloop.promotion.rollout import next_action
from driftloop.promotion.rollout_transitions import (
    EVIDENCE_TAG,
    REJECTED_TAG,
    REJECTION,
    RolloutRefused,
    guard_change,
    promotion_change,
)
from driftloop.promotion.routing import (
    RoutingMoved,
    Stamp,
    next_canary_doc,
    next_guard_doc,
    next_serving_doc,
    next_shadow_doc,
    write_routing,
)
from driftloop.promotion.transactions import ChampionMoved
from tests.unit.conftest import s3_client_for

STAMP = Stamp(by="rollout_guard/run-1/x", reason="because", at="2026-11-30T10:15:00Z")
SERVING = next_serving_doc(None, STAMP, model="m", champion="3")
SHADOW = next_shadow_doc(SERVING, STAMP, model="m", champion="3", challenger="4")
CANARY = next_canary_doc(SHADOW, STAMP, share=0.05)
GUARD = next_guard_doc(
    CANARY,
    STAMP,
    model="m",
    champion="4",
    previous="3",
    shadow_share=0.25,
    rollout_id=CANARY.rollout_id,
)
FAILED = {
    "verdict": "fail",
    "frames": 400,
    "hours": 2.5,
    "checks": [
        {
            "name": "latency_p95_ratio",
            "camera": "all",
            "estimate": 1.52,
            "low": 1.41,
            "high": 1.63,
            "threshold": 1.1,
            "status": "fail",
        },
        {
            "name": "agreement",
            "camera": "all",
            "estimate": 0.9,
            "low": 0.85,
            "high": 0.95,
            "threshold": 0.7,
            "status": "pass",
        },
    ],
}


@pytest.mark.parametrize(
    ("doc", "verdict", "action"),
    [
        (SHADOW, "hold", "hold"),
        (SHADOW, "pass", "to_canary"),
        (SHADOW, "fail", "reject"),
        (CANARY, "hold", "hold"),
        (CANARY, "pass", "promote"),
        (CANARY, "fail", "reject"),
        (GUARD, "hold", "hold"),
        (GUARD, "pass", "end_guard"),
        (GUARD, "fail", "rollback"),
        (SERVING, "pass", "hold"),
        (SERVING, "fail", "hold"),
        (None, "fail", "hold"),
    ],
)
def test_next_action_for_every_stage_and_verdict(doc, verdict, action):
    assert next_action(doc, {"verdict": verdict}) == action
    assert next_action(doc, SimpleNamespace(verdict=verdict)) == action  # a StageComparison
    assert action in rollout.ACTIONS


def test_an_unknown_verdict_is_refused():
    with pytest.raises(ValueError, match="stage verdict must be one of"):
        next_action(SHADOW, {"verdict": "maybe"})


def test_the_evidence_summary_keeps_the_failing_checks():
    summary = rollout.evidence_summary(FAILED)
    assert summary["verdict"] == "fail"
    assert (summary["frames"], summary["hours"]) == (400, 2.5)
    assert [c["name"] for c in summary["failed"]] == ["latency_p95_ratio"]
    assert rollout.failure_reasons(FAILED) == ["latency_p95_ratio (all): 1.52 [1.41, 1.63] vs 1.1"]
    assert rollout.evidence_summary(None) is None


def test_a_change_survives_its_intent_row():
    from driftloop.promotion import transactions

    move = transactions.rollback_move("m", {"champion": "4", "previous-champion": "3"})
    change = rollout.RoutingChange(
        "rollback", "4", SERVING, 4, move=move, tags={"4": {"a": "b"}}, details={"reason": "r"}
    )
    again = rollout.RoutingChange.from_dict(json.loads(json.dumps(change.to_dict())))
    assert again == change


def test_a_rollback_during_a_rollout_clears_the_challenger_in_the_same_move():
    from driftloop.promotion import transactions

    current = {"champion": "4", "previous-champion": "3", "challenger": "5"}
    move = transactions.rollback_move("m", current)
    assert move.intended == {"champion": "3", "previous-champion": None, "challenger": None}
    assert move.reachable_from(current)
    assert move.reachable_from({"champion": "3", "previous-champion": "3", "challenger": "5"})
    # another challenger appeared since: not the state this rollback was decided on
    assert not move.reachable_from({**current, "challenger": "6"})
    plain = transactions.rollback_move("m", {"champion": "4", "previous-champion": "3"})
    assert "challenger" not in plain.intended


# -- the transitions --------------------------------------------------------------------------


class Registry:
    """The one registry call the transitions make: the registered model's aliases."""

    def __init__(self, aliases):
        self.held = dict(aliases)

    def get_registered_model(self, name):
        return SimpleNamespace(aliases=self.held)


@pytest.fixture
def stores(moto_endpoint):
    """Stores whose routing document is ``doc`` (its history before it) and whose registry
    holds ``aliases``: a new bucket each."""
    s3 = s3_client_for(moto_endpoint)

    def at(doc, aliases):
        bucket = f"rollout-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        for step in (SERVING, SHADOW, CANARY, GUARD):
            write_routing(s3, bucket, step)
            if step == doc:
                break
        return rollout.Stores(Registry(aliases), None, s3, bucket, "m")

    return at


POLICY = load_promotion_policy().rollout
IN_SHADOW = {"champion": "3", "challenger": "4"}
IN_GUARD = {"champion": "4", "previous-champion": "3"}


def _decision(action, doc, aliases, comparison=None):
    return {"action": action, "doc": doc.to_dict(), "aliases": aliases, "comparison": comparison}


def test_shadow_pass_moves_only_the_document(stores):
    store = stores(SHADOW, IN_SHADOW)
    change = guard_change(store, _decision("to_canary", SHADOW, IN_SHADOW), POLICY, STAMP)
    assert change.move is None
    assert change.expected_sequence == SHADOW.sequence
    assert (change.doc.stage, change.doc.share, change.doc.shadow_share) == ("canary", 0.05, 0.05)
    assert change.doc.rollout_id == SHADOW.rollout_id
    assert change.version == "4"


def test_canary_pass_promotes_and_ends_the_challenger_period(stores):
    store = stores(CANARY, IN_SHADOW)
    change = guard_change(store, _decision("promote", CANARY, IN_SHADOW), POLICY, STAMP)
    assert change.move.kind == "promotion"
    assert change.move.expected == {"champion": "3", "challenger": "4"}
    assert change.move.intended == {"champion": "4", "previous-champion": "3", "challenger": None}
    doc = change.doc
    assert (doc.stage, doc.champion, doc.subject, doc.baseline) == ("guard", "4", "4", "3")
    assert doc.shadow_share == POLICY.guard.shadow_share
    assert doc.rollout_id == CANARY.rollout_id


@pytest.mark.parametrize("seen", [SHADOW, CANARY])
def test_a_rejection_withdraws_the_challenger_with_the_evidence(stores, seen):
    store = stores(seen, IN_SHADOW)
    stamp = Stamp(by="x", reason="latency_p95_ratio (all): 1.52 [1.41, 1.63] vs 1.1")
    change = guard_change(
        store, _decision("reject", seen, IN_SHADOW, FAILED), POLICY, stamp, decision_ledger_id=7
    )
    assert change.move.kind == REJECTION
    assert change.move.intended == {"champion": "3", "challenger": None}
    assert (change.doc.stage, change.doc.champion) == ("serving", "3")
    tags = change.tags["4"]
    assert tags[REJECTED_TAG] == f"{seen.stage}: {stamp.reason}"
    evidence = json.loads(tags[EVIDENCE_TAG])
    assert evidence["ledger_id"] == 7
    assert evidence["failed"][0]["name"] == "latency_p95_ratio"


def test_a_guard_fail_rolls_back_and_a_pass_ends_the_guard(stores):
    store = stores(GUARD, IN_GUARD)
    back = guard_change(store, _decision("rollback", GUARD, IN_GUARD, FAILED), POLICY, STAMP)
    assert back.move.kind == "rollback"
    assert back.move.intended == {"champion": "3", "previous-champion": None}
    assert (back.doc.stage, back.doc.champion) == ("serving", "3")
    assert EVIDENCE_TAG in back.tags["4"]
    ended = guard_change(store, _decision("end_guard", GUARD, IN_GUARD), POLICY, STAMP)
    assert ended.move is None
    assert (ended.doc.stage, ended.doc.champion) == ("serving", "4")


def test_a_transition_refuses_what_moved_since_the_decision(stores):
    store = stores(CANARY, IN_SHADOW)
    with pytest.raises(RoutingMoved, match="moved since the decision"):
        guard_change(store, _decision("to_canary", SHADOW, IN_SHADOW), POLICY, STAMP)
    moved = {"champion": "5", "challenger": "4"}
    with pytest.raises(ChampionMoved, match="champion v3 → v5"):
        guard_change(stores(CANARY, moved), _decision("promote", CANARY, IN_SHADOW), POLICY, STAMP)
    with pytest.raises(RolloutRefused, match="does not apply to stage canary"):
        guard_change(store, _decision("end_guard", CANARY, IN_SHADOW), POLICY, STAMP)


def test_after_a_promotion(stores):
    store = stores(SERVING, {"champion": "3", "challenger": "4"})
    start = promotion_change(
        store, {"target": "challenger", "aliases": {"after": IN_SHADOW}}, 0.25, STAMP
    )
    assert (start.action, start.doc.stage, start.doc.subject, start.doc.baseline) == (
        "start",
        "shadow",
        "4",
        "3",
    )
    assert start.doc.shadow_share == 1.0
    guard = promotion_change(
        store, {"target": "champion", "aliases": {"after": IN_GUARD}}, 0.3, STAMP
    )
    assert (guard.action, guard.doc.stage, guard.doc.shadow_share) == ("start_guard", "guard", 0.3)
    first = promotion_change(
        store, {"target": "champion", "aliases": {"after": {"champion": "1"}}}, 0.25, STAMP
    )
    assert (first.action, first.doc.stage, first.doc.champion) == ("serve", "serving", "1")
    assert first.expected_sequence == SERVING.sequence
    with pytest.raises(RolloutRefused, match="promote a first model to champion"):
        promotion_change(
            store, {"target": "challenger", "aliases": {"after": {"challenger": "1"}}}, 0.25, STAMP
        )
