"""``dag.test()`` of rollout_guard on the embedded stack, with the stage evidence stubbed: a
challenger in shadow holds, passes to canary, and is promoted (the Assets announced); with
the rollout over, a run ends at its first task; an operator's abort without a reason fails.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from driftloop.promotion import registry, rollout
from driftloop.promotion.routing import read_routing
from tests.conftest import load_dag
from tests.integration.test_rollout_transitions import (
    Comparison,
    _retrain_promotes,
    _versions,
    make_world,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def world(stack, s3, tmp_path, monkeypatch):
    return make_world(stack, s3, tmp_path, monkeypatch)


def _run(monkeypatch, verdict: str | None, hour: int, conf: dict | None = None):
    from driftloop.promotion import rollout_evidence

    monkeypatch.setattr(
        rollout_evidence, "stage_evidence", lambda *a, **k: Comparison(verdict or "hold")
    )
    moment = datetime(2031, 8, 1, hour, tzinfo=UTC)
    dag_run = load_dag("rollout_guard").test(
        run_conf=conf or {}, logical_date=moment, run_after=moment
    )
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states


def _xcom(dag_run, task_id: str, key: str = "return_value"):
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id, key=key)


def _emitted(run_id: str) -> set[str]:
    """The Assets whose events the DAG run's tasks emitted (Airflow's metadata database)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_dag_id == "rollout_guard", AssetEvent.source_run_id == run_id)
        )
        return {name for (name,) in rows}


def _ran(states) -> set[str]:
    return {task for task, state in states.items() if state == "success"}


def test_the_guard_holds_then_canaries_then_promotes(world, s3, monkeypatch):
    client, model, book = world["client"], world["model"], world["book"]
    bucket = world["stores"].bucket
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "challenger", "r2")

    held, states = _run(monkeypatch, "hold", 1)
    assert _ran(states) == {"routing", "evidence", "decide", "hold"}, states
    assert states["notify"] == states["announce_champion"] == "skipped"
    assert "shadows" in _xcom(held, "routing", "rollout_stage")
    assert read_routing(s3, bucket).stage == "shadow"
    decision = book.get(f"rollout_guard/{held.run_id}/decide")
    assert decision.payload["action"] == "hold"
    assert decision.input_hashes["evidence"]  # the report it decided on

    _, states = _run(monkeypatch, "pass", 2)
    assert _ran(states) == {
        "routing",
        "evidence",
        "decide",
        "to_canary",
        "announce_rollout",
        "notify",
    }, states
    assert states["announce_champion"] == "skipped"
    assert read_routing(s3, bucket).stage == "canary"

    promoted, states = _run(monkeypatch, "pass", 3)
    assert states["promote"] == "success", states
    assert states["announce_champion"] == states["announce_rollout"] == "success"
    assert {states[t] for t in ("to_canary", "reject", "rollback", "end_guard", "hold")} == {
        "skipped"
    }
    assert registry.aliases(client, model) == {"champion": v2, "previous-champion": v1}
    assert read_routing(s3, bucket).stage == "guard"
    assert _emitted(promoted.run_id) == {"driftloop_champion", "driftloop_rollout"}
    assert _emitted(held.run_id) == set()  # a skipped task announces nothing
    assert _xcom(promoted, "promote")["summary"].startswith("#4 guard")
    ok, why = rollout.agreement(world["stores"])
    assert ok, why

    # the same DAG run again (cleared): the decision and the change on record, nothing twice
    again, states = _run(monkeypatch, "fail", 3)
    assert again.run_id == promoted.run_id
    assert read_routing(s3, bucket).sequence == 4
    assert len(book.entries(kind="rollout")) == 4
    assert len(book.entries(kind="promotion")) == 3


def test_no_rollout_ends_the_run_at_its_first_task(world, s3, monkeypatch):
    client, model = world["client"], world["model"]
    (v1,) = _versions(client, model, 1)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")  # a first champion: stage serving
    dag_run, states = _run(monkeypatch, "fail", 4)
    assert states["routing"] == "success"
    assert {s for t, s in states.items() if t != "routing"} == {"skipped"}, states
    assert _xcom(dag_run, "routing", "rollout_stage") == "serving"
    _, states = _run(monkeypatch, None, 7, {"abort": True, "reason": "INC-13"})
    assert states["routing"] == "failed", states  # nothing to abort is an operator's mistake


def test_an_abort_needs_a_reason(world, s3, monkeypatch):
    client, model = world["client"], world["model"]
    v1, v2 = _versions(client, model, 2)
    _retrain_promotes(world, s3, v1, None, "champion", "r1")
    _retrain_promotes(world, s3, v2, v1, "challenger", "r2")
    _, states = _run(monkeypatch, None, 5, {"abort": True})
    assert states["routing"] == "failed", states
    assert registry.aliases(client, model)["challenger"] == v2
    _, states = _run(monkeypatch, None, 6, {"abort": True, "reason": "INC-12: bad boxes"})
    assert states["reject"] == "success", states
    assert registry.aliases(client, model) == {"champion": v1}
