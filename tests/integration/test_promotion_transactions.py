"""Promotion and rollback as guarded transactions, against a real ``mlflow server``: a crash
between any two registry writes, re-run, leaves registry and ledger in agreement; a champion
that moved since the decision is never overwritten; an unreadable registry is never empty."""

from __future__ import annotations

import uuid

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

from driftloop.audit.ledger import Ledger
from driftloop.promotion import registry, transactions
from driftloop.promotion.retention import plan_retention
from tests.integration.registry_versions import register_versions

pytestmark = pytest.mark.integration


class CrashingClient:
    """A real MlflowClient whose ``method`` raises on its ``on_call``-th call (1-based): the
    process dying between two writes, or MLflow answering 500 to one request."""

    def __init__(self, client, method: str, on_call: int = 1):
        self._client, self.method, self.on_call, self.calls = client, method, on_call, 0

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name != self.method:
            return attr

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.on_call:
                raise MlflowException(f"injected failure of {name}", error_code=INTERNAL_ERROR)
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def client(stack):
    from mlflow import MlflowClient

    return MlflowClient(stack.env["MLFLOW_TRACKING_URI"])


@pytest.fixture
def model(client):
    return f"txn-detector-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def book(tmp_path):
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def _versions(client, model, n: int) -> list[str]:
    return register_versions(client, model, n, "txn-tests")


def _promote(client, book, model, version, expected, key="run/promote", target="champion"):
    move = transactions.promotion_move(model, version, expected_champion=expected, target=target)
    return transactions.guarded_move(
        client,
        book,
        move,
        key=key,
        actor="policy:auto",
        details={"target": target},
        tags=lambda m: {version: {"gate": "passed"}},
    )


def _rollback(client, book, model, key="rb/rollback"):
    from driftloop.config.settings import Settings
    from driftloop.promotion import rollback as rollback_step

    del client, book  # the step builds its own from settings (see the settings fixture)
    return rollback_step.rollback(Settings.from_env(), "incident 42", "oncall-alice", key)


def _kinds(book) -> list[str]:
    return [entry.kind for entry in book.entries()]


def test_first_promotion_then_a_second_keeps_the_previous_champion(client, book, model):
    v1, v2 = _versions(client, model, 2)
    first = _promote(client, book, model, v1, None, key="r1/promote")
    assert first["aliases"] == {"before": {}, "after": {"champion": v1}}
    second = _promote(client, book, model, v2, v1, key="r2/promote")
    assert registry.aliases(client, model) == {"champion": v2, "previous-champion": v1}
    assert second["aliases"]["before"] == {"champion": v1}
    assert _kinds(book) == ["promotion_intent", "promotion"] * 2
    assert transactions.registry_agrees(client, book, model)[0]
    again = _promote(client, book, model, v2, v1, key="r2/promote")
    assert again["already_done"]
    assert len(book.entries()) == 4


@pytest.mark.parametrize(
    ("method", "on_call"),
    [
        ("set_registered_model_alias", 1),  # dies before anything moved
        ("set_registered_model_alias", 2),  # previous-champion set, champion not yet
        ("set_model_version_tag", 1),  # aliases moved, tags and completion row missing
    ],
)
def test_a_crash_inside_the_promotion_is_finished_by_the_rerun(
    client, book, model, method, on_call
):
    v1, v2 = _versions(client, model, 2)
    _promote(client, book, model, v1, None, key="r1/promote")
    with pytest.raises(MlflowException, match="injected"):
        _promote(CrashingClient(client, method, on_call), book, model, v2, v1, key="r2/promote")
    assert book.get("r2/promote") is None  # no completion row for a half-done change
    done = _promote(client, book, model, v2, v1, key="r2/promote")
    assert registry.aliases(client, model) == {"champion": v2, "previous-champion": v1}
    # the record says v1 → v2 even when the first attempt had already moved the alias
    assert done["aliases"] == {
        "before": {"champion": v1},
        "after": {"champion": v2, "previous-champion": v1},
    }
    assert _kinds(book).count("promotion") == 2
    assert transactions.registry_agrees(client, book, model)[0]
    assert book.verify().ok


def test_a_champion_that_moved_since_the_evaluation_is_not_replaced(client, book, model):
    v1, v2, v3 = _versions(client, model, 3)
    _promote(client, book, model, v1, None, key="r1/promote")
    client.set_registered_model_alias(model, "champion", v3)  # someone else, meanwhile
    with pytest.raises(transactions.ChampionMoved, match="expected aliases"):
        _promote(client, book, model, v2, v1, key="r2/promote")
    assert registry.aliases(client, model)["champion"] == v3
    assert book.get("r2/promote") is None
    assert book.get("r2/promote/aborted").payload["found"]["champion"] == v3


def test_a_crash_inside_the_rollback_never_withdraws_the_restored_version(
    client, book, model, monkeypatch, stack, tmp_path
):
    from driftloop.retrain import records

    monkeypatch.setenv("DRIFTLOOP_REGISTERED_MODEL", model)
    monkeypatch.setattr(records, "ledger", lambda settings: book)
    v1, v2 = _versions(client, model, 2)
    _promote(client, book, model, v1, None, key="r1/promote")
    _promote(client, book, model, v2, v1, key="r2/promote")
    from driftloop.drift import tracking

    real = tracking.client
    # champion already back on v1, previous-champion not yet cleared: the step dies there
    monkeypatch.setattr(
        tracking, "client", lambda uri: CrashingClient(real(uri), "delete_registered_model_alias")
    )
    with pytest.raises(MlflowException, match="injected"):
        _rollback(client, book, model)
    assert registry.aliases(client, model)["champion"] == v1
    monkeypatch.setattr(tracking, "client", real)
    done = _rollback(client, book, model)
    assert (done["withdrawn"], done["restored"]) == (v2, v1)
    assert registry.aliases(client, model) == {"champion": v1}
    tags = {v: client.get_model_version(model, v).tags for v in (v1, v2)}
    assert "rolled_back" not in tags[v1]  # the serving version is not marked withdrawn
    assert tags[v2]["rolled_back"] == "incident 42"
    assert transactions.registry_agrees(client, book, model)[0]
    assert _rollback(client, book, model)["already_done"]


def test_an_unreadable_registry_is_not_an_empty_one(client, model):
    (v1,) = _versions(client, model, 1)
    client.set_registered_model_alias(model, "champion", v1)
    failing = CrashingClient(client, "get_registered_model")
    with pytest.raises(MlflowException, match="injected"):
        registry.aliases(failing, model)
    assert registry.aliases(client, f"{model}-never-registered") == {}
    with pytest.raises(MlflowException, match="injected"):
        registry.version_with_alias(CrashingClient(client, "get_registered_model"), model, "x")


def test_retention_never_deletes_when_the_protected_set_cannot_be_read(client, model):
    versions = _versions(client, model, 3)
    client.set_registered_model_alias(model, "champion", versions[0])
    plan = plan_retention(registry.version_infos(client, model), keep_last=0)
    assert plan.archive == [int(v) for v in reversed(versions[1:])]
    with pytest.raises(MlflowException, match="injected"):
        registry.apply_retention(
            CrashingClient(client, "get_registered_model"), model, plan, mode="delete"
        )
    assert len(client.search_model_versions(f"name='{model}'")) == 3
    forged = plan.__class__(keep=[], archive=[int(versions[0])], keep_last=0)
    with pytest.raises(ValueError, match="protected alias"):
        registry.apply_retention(client, model, forged, mode="delete")
