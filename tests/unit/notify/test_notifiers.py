"""driftloop.airflow.notifiers and its sender: notifications off without a webhook, what a
failure is recorded on, where the drift event comes from, and the ledger's descriptions of a
promotion, rejection and rollback. No webhook is contacted here (see
tests/integration/test_notifications.py for the loopback server)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

# Airflow configures logging (replacing the root logger's handlers) when the Slack provider
# first loads: load it now, before caplog adds its handler in a test
import driftloop.airflow.slack_notifier  # noqa: F401
from driftloop.airflow import notifiers
from driftloop.airflow.notifiers import (
    Notification,
    context_facts,
    drift_event_id,
    event_notifier,
    send,
    task_failure_notifier,
)
from driftloop.audit.ledger import Ledger
from driftloop.config.settings import Settings
from driftloop.notify import payloads

CONN_ENV = "AIRFLOW_CONN_DRIFTLOOP_ALERTS"
#: a port nothing listens on: used where the test proves no request is made
UNUSED_URL = "http://127.0.0.1:9/never-called"
WINDOW = {"start": "2026-11-01", "end": "2026-11-14"}


@pytest.fixture
def database(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "driftloop.db"
    monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", f"sqlite:///{path}")
    return path


def _webhook(monkeypatch, url: str) -> None:
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "slackwebhook", "password": url}))


class FakeTI:
    dag_id, task_id, try_number, map_index = "retrain_detector", "evaluate", 2, -1
    log_url = "http://airflow.example/dags/retrain_detector/runs/r1/tasks/evaluate?try_number=2"

    def __init__(self, xcoms=None):
        self.xcoms = xcoms or {}

    def xcom_pull(self, task_ids):
        if task_ids not in self.xcoms:
            raise KeyError(task_ids)
        return self.xcoms[task_ids]


def _context(**extra):
    return {"ti": FakeTI(extra.pop("xcoms", None)), "run_id": "r1", **extra}


# ----------------------------------------------------------------------- notifications off
@pytest.mark.parametrize("password", [None, "", "   "])
def test_no_webhook_means_one_log_line_and_nothing_else(monkeypatch, database, caplog, password):
    if password is None:
        monkeypatch.delenv(CONN_ENV, raising=False)
    else:
        _webhook(monkeypatch, password)
    with caplog.at_level(logging.INFO):
        delivered = send("drift_critical", {"window": WINDOW, "drift_event_id": 3}, {})
    assert delivered is False
    off = [r for r in caplog.records if "notifications off" in r.getMessage()]
    assert len(off) == 1
    assert off[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not database.exists()  # no ledger row, not even a database


def test_a_payload_that_cannot_be_built_is_a_recorded_failure(monkeypatch, database, caplog):
    """A promotion callback of a run whose ledger has no promote row: the message is never
    built, nothing is posted, the failure is recorded on the DAG run and the task goes on."""
    _webhook(monkeypatch, UNUSED_URL)
    context = _context()
    with caplog.at_level(logging.INFO):
        assert event_notifier("promotion").deliver(context) is False
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("promotion notification not delivered" in m and "LookupError" in m for m in errors)
    (row,) = Ledger(f"sqlite:///{database}").entries(kind="notification_failed")
    assert row.subject == "dag_run:retrain_detector/r1"
    assert row.payload["notification"] == "promotion"
    assert row.idempotency_key.endswith("/notification_failed/promotion/try2")


def test_a_ledger_that_cannot_take_the_failure_still_never_raises(monkeypatch, tmp_path, caplog):
    _webhook(monkeypatch, UNUSED_URL)
    monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", f"sqlite:///{tmp_path}/missing/dir/x.db")
    with caplog.at_level(logging.ERROR):
        assert event_notifier("rollback").deliver(_context()) is False
    assert any("is not in the audit ledger" in r.getMessage() for r in caplog.records)


# -------------------------------------------------------------------------- the callables
def test_kinds_are_checked_when_the_dag_file_is_parsed():
    with pytest.raises(ValueError, match="unknown notification kind"):
        Notification("drift_wobble")
    with pytest.raises(ValueError, match="no ledger description"):
        event_notifier("drift_warning")
    assert task_failure_notifier().kind == "task_failure"
    assert callable(task_failure_notifier(drift_event_task="plan"))


def test_the_dag_side_module_imports_no_provider():
    """The callbacks go into default_args at parse time: the Slack provider (slack_sdk,
    aiohttp, SQLAlchemy via the provider manager) loads only when one runs."""
    import subprocess
    import sys

    code = (
        "import sys, airflow.sdk\n"
        "before = set(sys.modules)\n"
        "from driftloop.airflow.notifiers import task_failure_notifier, event_notifier\n"
        "task_failure_notifier(); event_notifier('promotion')\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new & {'slack_sdk', 'aiohttp', 'sqlalchemy'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------ context
def test_context_facts_name_the_run_and_link_it():
    facts = context_facts(_context())
    assert facts["dag_id"] == "retrain_detector"
    assert facts["run_id"] == "r1"
    assert facts["task_id"] == "evaluate"
    assert facts["try_number"] == 2
    assert facts["airflow_url"].endswith("/dags/retrain_detector/runs/r1")
    assert facts["log_url"] == FakeTI.log_url
    assert context_facts({}) == {}


def test_failure_facts_carry_the_exception():
    facts = notifiers.failure_facts({"exception": RuntimeError("MLflow answered 503")})
    assert facts == {"exception": "RuntimeError: MLflow answered 503"}


def test_the_drift_event_comes_from_payload_params_or_a_task():
    assert drift_event_id({"drift_event_id": 4}, _context(params={"event_id": 9})) == 4
    assert drift_event_id({}, _context(params={"event_id": 9})) == 9
    assert drift_event_id({}, _context(params={"drift_event_id": 8})) == 8
    planned = {"plan": {"trigger": {"kind": "drift", "drift_event_id": 12}}}
    assert drift_event_id({}, _context(xcoms=planned), "plan") == 12
    opened = {"open_drift_event": {"event_id": 5, "already_open": False}}
    assert drift_event_id({}, _context(xcoms=opened), "open_drift_event") == 5
    # the task never ran, or returned nothing about an event
    assert drift_event_id({}, _context(), "open_drift_event") is None
    assert drift_event_id({}, _context(xcoms={"plan": None}), "plan") is None
    assert drift_event_id({}, {}) is None


def test_failure_subject_is_the_event_else_the_version_else_the_run():
    from driftloop.airflow.slack_notifier import failure_key, failure_subject

    settings = Settings()
    run = {"dag_id": "d", "run_id": "r", "task_id": "t", "try_number": 1}
    assert failure_subject({**run, "drift_event_id": 7, "version": "4"}, settings) == (
        "drift_event:7"
    )
    assert failure_subject({**run, "version": "4"}, settings) == "model:driftloop-detector/v4"
    assert failure_subject({**run, "subject": "5", "model": "m"}, settings) == "model:m/v5"
    assert failure_subject(run, settings) == "dag_run:d/r"
    assert failure_key("promotion", run) == "d/r/t/-1/notification_failed/promotion/try1"
    assert failure_key("promotion", {**run, "try_number": 2}) != failure_key("promotion", run)
    assert failure_key("promotion", {}) != failure_key("promotion", {})  # outside a task


# ------------------------------------------------------------------- ledger descriptions
def _ledger_rows(url: str, run_id: str) -> None:
    book = Ledger(url)
    key = f"retrain_detector/{run_id}"
    book.append(
        "training_run",
        actor=f"airflow:{run_id}",
        subject="model:driftloop-detector/v4",
        payload={"plan": {"trigger": {"kind": "drift", "drift_event_id": 7}}},
        idempotency_key=f"{key}/register",
    )
    book.append(
        "gate_decision",
        actor="policy:promotion_gate",
        subject="model:driftloop-detector/v4",
        payload={
            "promote": True,
            "candidate_version": "4",
            "champion_version": "3",
            "checks": [{"name": "map50_95_delta_low", "passed": True, "value": 0.03}],
        },
        idempotency_key=f"{key}/gate",
    )
    book.append(
        "promotion",
        actor="alice",
        subject="model:driftloop-detector/v4",
        payload={
            "target": "champion",
            "aliases": {
                "before": {"champion": "3"},
                "after": {"champion": "4", "previous-champion": "3"},
            },
        },
        idempotency_key=f"{key}/promote",
    )
    book.append(
        "rollback",
        actor="bob",
        subject="model:driftloop-detector/v4",
        payload={"reason": "INC-42", "withdrawn": "4", "restored": "3"},
        idempotency_key=f"rollback_detector/{run_id}/rollback",
    )


def test_promotion_and_rollback_are_described_from_the_ledger(database):
    settings = Settings.from_env()
    _ledger_rows(settings.database_url, "r1")
    promoted = payloads.promotion(settings, "r1")
    assert promoted["version"] == "4"
    assert promoted["previous_version"] == "3"
    assert promoted["target"] == "champion"
    assert promoted["actor"] == "alice"
    assert promoted["drift_event_id"] == 7
    assert promoted["checks"][0]["name"] == "map50_95_delta_low"
    rolled = payloads.rollback(settings, "r1")
    assert rolled == {
        "withdrawn": "4",
        "restored": "3",
        "reason": "INC-42",
        "mode": "manual",
        "actor": "bob",
    }
    with pytest.raises(LookupError, match="retrain_detector/r2/promote"):
        payloads.promotion(settings, "r2")


def test_rejection_is_described_from_the_ledger(database):
    settings = Settings.from_env()
    book = Ledger(settings.database_url)
    book.append(
        "gate_decision",
        actor="policy:promotion_gate",
        subject="model:driftloop-detector/v5",
        payload={"promote": False, "candidate_version": "5", "champion_version": "4"},
        idempotency_key="retrain_detector/r3/gate",
    )
    book.append(
        "rejection",
        actor="policy:promotion_gate",
        subject="model:driftloop-detector/v5",
        payload={"reasons": ["delta too small"], "champion_untouched": {"champion": "4"}},
        idempotency_key="retrain_detector/r3/reject",
    )
    rejected = payloads.rejection(settings, "r3")
    assert rejected["version"] == "5"
    assert rejected["champion_version"] == "4"
    assert rejected["reasons"] == ["delta too small"]
    assert rejected["drift_event_id"] is None


def test_drift_payload_from_a_decision():
    decision = {
        "window": WINDOW,
        "severity": "critical",
        "drifted_features": ["brightness"],
        "features": [
            {"feature": "brightness", "method": "psi", "effect": 0.4, "alert_level": "critical"},
            {"feature": "contrast", "method": "psi", "effect": 0.01, "alert_level": "none"},
        ],
        "reference": {"kind": "champion", "model_version": "3"},
        "policy": {"approval": "required"},
    }
    warning = payloads.drift_payload(decision, "http://mlflow.example/report")
    assert [f["feature"] for f in warning["features"]] == ["brightness"]
    assert warning["model_version"] == "3"
    assert "drift_event_id" not in warning
    critical = payloads.drift_payload(decision, None, 7)
    assert critical["drift_event_id"] == 7
    assert critical["approval"] == "required"
    assert SimpleNamespace(**critical).window == WINDOW
