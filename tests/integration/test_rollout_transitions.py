"""Rollout transitions against the real servers (moto S3, ``mlflow server``): a challenger goes
shadow → canary → champion, or is rejected; a new champion is guarded and rolled back on an SLO
miss; a manual rollback ends a rollout; and a crash between the alias move and the routing
document is finished by a re-run or by the next guard run — after each, registry, routing
document and ledger agree.

Each test has its own bucket, registered model and ledger. The stage evidence is stubbed (its
statistics are the evidence module's tests): the guard's steps run as the DAG's tasks call them.
"""

from __future__ import annotations

import uuid

import pytest

from driftloop.audit.ledger import Ledger
from driftloop.promotion import registry, rollout, rollout_steps, transactions
from driftloop.promotion.routing import RoutingMoved, consistent_with_aliases, read_routing
from tests.integration.registry_versions import register_versions

pytestmark = pytest.mark.integration


class Comparison:
    """What ``stage_evidence`` returns, reduced to what the guard reads."""

    def __init__(self, verdict: str, failing: str | None = None):
        self.verdict = verdict
        self.failing = failing

    def to_dict(self):
        checks = [
            {
                "name": "agreement",
                "camera": "all",
                "estimate": 0.93,
                "low": 0.9,
                "high": 0.95,
                "threshold": 0.7,
                "status": "pass",
            }
        ]
        if self.failing:
            checks.append(
                {
                    "name": self.failing,
                    "camera": "cam-01",
                    "estimate": 1.6,
                    "low": 1.4,
                    "high": 1.8,
                    "threshold": 1.1,
                    "status": "fail",
                }
            )
        return {"verdict": self.verdict, "frames": 400, "hours": 3.0, "checks": checks}


@pytest.fixture
def world(stack, s3, tmp_path, monkeypatch):
    return make_world(stack, s3, tmp_path, monkeypatch)


def make_world(stack, s3, tmp_path, monkeypatch) -> dict:
    """A bucket, a registered model and a ledger of this test, in the settings the steps read."""
    from mlflow import MlflowClient

    from driftloop.config.settings import Settings
    from driftloop.retrain import records

    suffix = uuid.uuid4().hex[:8]
    bucket, model = f"rollout-{suffix}", f"rollout-detector-{suffix}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv("DRIFTLOOP_BUCKET", bucket)
    monkeypatch.setenv("DRIFTLOOP_REGISTERED_MODEL", model)
    book = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setattr(records, "ledger", lambda settings: book)
    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    settings = Settings.from_env()
    return {
        "settings": settings,
        "client": client,
        "book": book,
        "model": model,
        "stores": rollout.Stores(client, book, s3, bucket, model),
    }


def _versions(client, model, n: int) -> list[str]:
    return register_versions(client, model, n, "rollout-tests")


def _retrain_promotes(world, s3, version, expected, target, run_id):
    """retrain_detector's promote (the guarded move under its step key), then update_routing."""
    from driftloop.promotion.rollout_transitions import after_promotion
    from driftloop.retrain.decision import step_key

    move = transactions.promotion_move(
        world["model"], version, expected_champion=expected, target=target
    )
    transactions.guarded_move(
        world["client"],
        world["book"],
        move,
        key=step_key(run_id, "promote"),
        actor="policy:auto",
        details={"target": target},
        tags=lambda m: {},
    )
    return after_promotion(s3, world["settings"], run_id)


def _guard_run(world, s3, monkeypatch, run_id, comparison, *, abort=False):
    """One rollout_guard run as its tasks call the steps; the action taken (None: no rollout)."""
    from driftloop.config.promotion_policy import load_promotion_policy
    from driftloop.promotion import rollout_evidence

    monkeypatch.setattr(rollout_evidence, "stage_evidence", lambda *a, **k: comparison)
    settings = world["settings"]
    if rollout_steps.current_stage(s3, settings) is None:
        return None
    policy = load_promotion_policy()
    if not abort:
        rollout_steps.gather_evidence(s3, settings, run_id, policy)
    decision = rollout_steps.decide(
        s3, settings, run_id, abort=abort, reason="INC-7", operator="oncall-alice"
    )
    if decision["action"] != rollout.HOLD:
        rollout_steps.act(s3, settings, run_id, decision["action"], policy)
    return decision["action"]


def _agree(world):
    ok, why = rollout.agreement(world["stores"])
    assert ok, why


def test_a_challenger_goes_shadow_canary_champion_then_its_guard_ends(world, s3, monkeypatch):
    client, model, book = world["client"], world["model"], world["book"]
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    assert read_routing(s3, world["stores"].bucket).stage == "serving"
    started = _retrain_promotes(world, s3, v2, v1, "challenger", "r2")
    assert (started["action"], started["doc"]["stage"]) == ("start", "shadow")
    _agree(world)
    from driftloop.promotion.rollout_transitions import promotion_announcement

    assert promotion_announcement(world["settings"], "r2", "rollout").startswith("rollout started")
    assert promotion_announcement(world["settings"], "r2", "champion") is None

    assert _guard_run(world, s3, monkeypatch, "g1", Comparison("hold")) == "hold"
    assert read_routing(s3, world["stores"].bucket).stage == "shadow"
    assert _guard_run(world, s3, monkeypatch, "g2", Comparison("pass")) == "to_canary"
    canary = read_routing(s3, world["stores"].bucket)
    assert (canary.stage, canary.share, canary.subject) == ("canary", 0.05, v2)
    assert rollout_steps.announcement(world["settings"], "g2", "rollout").startswith("to_canary")
    assert rollout_steps.announcement(world["settings"], "g2", "champion") is None
    _agree(world)

    assert _guard_run(world, s3, monkeypatch, "g3", Comparison("pass")) == "promote"
    assert registry.aliases(client, model) == {"champion": v2, "previous-champion": v1}
    guard = read_routing(s3, world["stores"].bucket)
    assert (guard.stage, guard.subject, guard.baseline) == ("guard", v2, v1)
    assert guard.rollout_id == canary.rollout_id
    assert client.get_model_version(model, v2).tags["rollout_promoted"].startswith("canary")
    assert rollout_steps.announcement(world["settings"], "g3", "champion").startswith("promote")
    kind, message = rollout_steps.notification(world["settings"], "g3")
    assert (kind, message["version"], message["previous_version"]) == ("promotion", v2, v1)
    _agree(world)

    assert _guard_run(world, s3, monkeypatch, "g4", Comparison("pass")) == "end_guard"
    assert read_routing(s3, world["stores"].bucket).stage == "serving"
    assert _guard_run(world, s3, monkeypatch, "g5", Comparison("pass")) is None  # nothing to judge
    _agree(world)
    rows = [e.payload["action"] for e in book.entries(kind="rollout")]
    assert rows == ["serve", "start", "to_canary", "promote", "end_guard"]
    # each row names its document: the routing history, one row per change
    assert [e.payload["doc"]["sequence"] for e in book.entries(kind="rollout")] == [1, 2, 3, 4, 5]
    assert [e.payload["action"] for e in book.entries(kind="rollout_decision")] == [
        "hold",
        "to_canary",
        "promote",
        "end_guard",
    ]
    assert book.verify().ok


@pytest.mark.parametrize("stage", ["shadow", "canary"])
def test_a_failing_challenger_is_rejected_with_its_evidence(world, s3, monkeypatch, stage):
    client, model, book = world["client"], world["model"], world["book"]
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "challenger", "r2")
    if stage == "canary":
        _guard_run(world, s3, monkeypatch, "g1", Comparison("pass"))
    action = _guard_run(world, s3, monkeypatch, "g2", Comparison("fail", "latency_p95_ratio"))
    assert action == "reject"
    assert registry.aliases(client, model) == {"champion": v1}
    doc = read_routing(s3, world["stores"].bucket)
    assert (doc.stage, doc.champion) == ("serving", v1)
    tags = client.get_model_version(model, v2).tags
    assert tags["rollout_rejected"].startswith(f"{stage}: latency_p95_ratio (cam-01): 1.6")
    assert '"name": "latency_p95_ratio"' in tags["rollout_evidence"]
    row = book.get("rollout_guard/g2/reject")
    assert row.subject == f"model:{model}/v{v2}"
    assert row.payload["evidence"]["failed"][0]["name"] == "latency_p95_ratio"
    # the full evidence is recorded with the decision
    assert (
        book.get("rollout_guard/g2/decide").payload["comparison"]["checks"][1]["status"] == "fail"
    )
    assert [e.kind for e in book.entries(subject=f"model:{model}/v{v2}")][-3:] == [
        "rejection_intent",
        "rejection",
        "rollout",
    ]
    _agree(world)


def test_an_operator_aborts_a_rollout(world, s3, monkeypatch):
    client, model, book = world["client"], world["model"], world["book"]
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "challenger", "r2")
    assert _guard_run(world, s3, monkeypatch, "g1", None, abort=True) == "reject"
    assert registry.aliases(client, model) == {"champion": v1}
    decision = book.get("rollout_guard/g1/decide")
    assert decision.actor == "oncall-alice"
    assert decision.payload["reason"] == "aborted by oncall-alice: INC-7"
    assert book.get("rollout_guard/g1/reject").actor == "oncall-alice"
    _agree(world)


def test_a_guard_fail_rolls_back_automatically(world, s3, monkeypatch):
    client, model, book = world["client"], world["model"], world["book"]
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    routed = _retrain_promotes(world, s3, v2, v1, "champion", "r2")
    assert (routed["action"], routed["doc"]["shadow_share"]) == ("start_guard", 0.25)
    from driftloop.promotion.rollout_transitions import promotion_announcement

    assert promotion_announcement(world["settings"], "r2", "champion").startswith(f"v{v2}")
    assert _guard_run(world, s3, monkeypatch, "g1", Comparison("hold")) == "hold"
    action = _guard_run(world, s3, monkeypatch, "g2", Comparison("fail", "detections_ratio"))
    assert action == "rollback"
    assert registry.aliases(client, model) == {"champion": v1}
    doc = read_routing(s3, world["stores"].bucket)
    assert (doc.stage, doc.champion) == ("serving", v1)
    tags = client.get_model_version(model, v2).tags
    assert tags["rolled_back"].startswith("detections_ratio (cam-01)")
    assert "detections_ratio" in tags["rollout_evidence"]
    assert "rolled_back" not in client.get_model_version(model, v1).tags
    rollback = book.entries(kind="rollback")[-1]
    assert (rollback.payload["withdrawn"], rollback.payload["restored"]) == (v2, v1)
    assert rollout_steps.announcement(world["settings"], "g2", "champion").startswith("rollback")
    kind, message = rollout_steps.notification(world["settings"], "g2")
    assert (kind, message["mode"], message["restored"]) == ("rollback", "automatic", v1)
    _agree(world)


def test_a_manual_rollback_ends_the_rollout(world, s3, monkeypatch):
    from driftloop.promotion.rollback import rollback
    from driftloop.promotion.rollout_transitions import after_manual_rollback

    client, model, book = world["client"], world["model"], world["book"]
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "champion", "r2")  # guard period of v2
    done = rollback(world["settings"], "INC-9: false alarms", "oncall-bob", "m1")
    routed = after_manual_rollback(s3, world["settings"], "m1", done, "oncall-bob")
    assert (routed["doc"]["stage"], routed["doc"]["champion"]) == ("serving", v1)
    assert routed["doc"]["updated_by"] == "rollback_detector/m1/rollback"
    again = after_manual_rollback(s3, world["settings"], "m1", done, "oncall-bob")
    assert again["already_done"]
    restored = book.get("rollback_detector/m1/routing")
    assert (restored.payload["action"], restored.actor) == ("restore", "oncall-bob")
    assert restored.subject == f"model:{model}/v{v2}"  # the row is about the withdrawn version
    assert _guard_run(world, s3, monkeypatch, "g1", Comparison("fail")) is None
    _agree(world)


def test_a_manual_rollback_during_shadow_withdraws_the_challenger_too(world, s3, monkeypatch):
    from driftloop.promotion.rollback import rollback
    from driftloop.promotion.rollout_transitions import after_manual_rollback

    client, model, book = world["client"], world["model"], world["book"]
    v1, v2, v3 = _versions(client, model, 3)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "champion", "r2")
    _retrain_promotes(world, s3, v3, v2, "challenger", "r3")  # v3 in shadow against v2
    done = rollback(world["settings"], "INC-10: v2 misfires", "oncall-bob", "m2")
    assert done["challenger_withdrawn"] == v3
    assert registry.aliases(client, model) == {"champion": v1}
    ended = client.get_model_version(model, v3).tags["rollout_ended"]
    assert f"v{v2} rolled back to v{v1}" in ended
    assert "INC-10" in ended
    assert "rolled_back" not in client.get_model_version(model, v3).tags
    routed = after_manual_rollback(s3, world["settings"], "m2", done, "oncall-bob")
    assert (routed["doc"]["stage"], routed["doc"]["champion"]) == ("serving", v1)
    assert book.get("rollback_detector/m2/rollback").payload["challenger_withdrawn"] == v3
    _agree(world)


def test_a_crash_between_the_alias_move_and_the_document_is_finished_by_the_rerun(
    world, s3, monkeypatch
):
    client, model, book = world["client"], world["model"], world["book"]
    bucket = world["stores"].bucket
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "challenger", "r2")
    _guard_run(world, s3, monkeypatch, "g1", Comparison("pass"))  # canary
    real_write = rollout.write_routing

    def crash(*args, **kwargs):
        raise ConnectionError("injected: S3 gone after the aliases moved")

    monkeypatch.setattr(rollout, "write_routing", crash)
    with pytest.raises(ConnectionError, match="injected"):
        _guard_run(world, s3, monkeypatch, "g2", Comparison("pass"))
    # half done: the aliases moved, the document did not, nothing completed
    aliases = registry.aliases(client, model)
    assert aliases == {"champion": v2, "previous-champion": v1}
    assert read_routing(s3, bucket).stage == "canary"
    assert not consistent_with_aliases(read_routing(s3, bucket), aliases)  # serving: champion alone
    assert book.get("rollout_guard/g2/promote") is None
    assert not rollout.agreement(world["stores"])[0]

    monkeypatch.setattr(rollout, "write_routing", real_write)
    done = rollout_steps.act(s3, world["settings"], "g2", "promote", _policy())  # the retry
    assert not done["already_done"]
    assert read_routing(s3, bucket).stage == "guard"
    assert len(book.entries(kind="promotion")) == 3  # v1, v2 to challenger, v2 to champion
    _agree(world)
    assert rollout_steps.act(s3, world["settings"], "g2", "promote", _policy())["already_done"]


def test_a_half_done_change_nobody_reruns_is_finished_by_the_next_guard_run(world, s3, monkeypatch):
    client, model = world["client"], world["model"]
    bucket = world["stores"].bucket
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "challenger", "r2")
    monkeypatch.setattr(rollout, "write_routing", _crash_once(rollout.write_routing))
    with pytest.raises(ConnectionError, match="injected"):
        _guard_run(world, s3, monkeypatch, "g1", Comparison("fail", "agreement"))
    assert registry.aliases(client, model) == {"champion": v1}  # the challenger is withdrawn
    assert read_routing(s3, bucket).stage == "shadow"
    # the next hour's run finishes the rejection before it reads the stage: nothing to judge
    assert _guard_run(world, s3, monkeypatch, "g2", Comparison("pass")) is None
    assert read_routing(s3, bucket).stage == "serving"
    assert world["book"].get("rollout_guard/g1/reject").payload["action"] == "reject"
    _agree(world)


def test_a_decision_whose_document_moved_acts_on_nothing(world, s3, monkeypatch):
    client, model, book = world["client"], world["model"], world["book"]
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "challenger", "r2")
    from driftloop.config.promotion_policy import load_promotion_policy
    from driftloop.promotion import rollout_evidence

    monkeypatch.setattr(rollout_evidence, "stage_evidence", lambda *a, **k: Comparison("pass"))
    settings = world["settings"]
    rollout_steps.gather_evidence(s3, settings, "g1", load_promotion_policy())
    rollout_steps.decide(s3, settings, "g1", abort=False, reason="", operator="x")
    # meanwhile another run moved the document on
    _guard_run(world, s3, monkeypatch, "g2", Comparison("pass"))
    with pytest.raises(RoutingMoved, match="moved since the decision"):
        rollout_steps.act(s3, settings, "g1", "to_canary", load_promotion_policy())
    assert book.get("rollout_guard/g1/to_canary/intent") is None
    assert read_routing(s3, world["stores"].bucket).sequence == 3
    _agree(world)


def _policy():
    from driftloop.config.promotion_policy import load_promotion_policy

    return load_promotion_policy()


def _crash_once(real):
    calls = []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("injected: S3 gone after the aliases moved")
        return real(*args, **kwargs)

    return write


def test_another_model_takes_the_buckets_document_over(world, s3, monkeypatch):
    from dataclasses import replace

    from driftloop.config.settings import Settings

    client, model = world["client"], world["model"]
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "challenger", "r2")  # model A in shadow, #2
    other = f"{model}-b"
    monkeypatch.setenv("DRIFTLOOP_REGISTERED_MODEL", other)
    world_b = {
        **world,
        "model": other,
        "settings": Settings.from_env(),
        "stores": replace(world["stores"], model=other),
    }
    b1, b2 = _versions(client, other, 2)
    _retrain_promotes(world_b, s3, b1, None, "champion", "b1")
    routed = _retrain_promotes(world_b, s3, b2, b1, "challenger", "b2")
    assert (routed["doc"]["model"], routed["doc"]["sequence"]) == (other, 4)  # the sequence goes on
    _agree(world_b)
    # model A's guard has nothing to judge in a bucket that now routes model B
    assert _guard_run(world, s3, monkeypatch, "g1", Comparison("fail")) is None
    assert not rollout.agreement(world["stores"])[0]
    assert _guard_run(world_b, s3, monkeypatch, "g2", Comparison("pass")) == "to_canary"
