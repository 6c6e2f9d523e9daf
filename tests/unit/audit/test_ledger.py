"""The hash-chained audit ledger: appends, idempotency, tamper detection, concurrency, CLI."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftloop.audit.ledger import (
    GENESIS_HASH,
    Ledger,
    audit_ledger,
    canonical_json,
    model_subject,
    sha256_json,
    task_key,
)
from driftloop.drift import history

REPO = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def ledger(url):
    return Ledger(url, clock=Clock())


def fill(ledger, n=5):
    return [
        ledger.append(
            "gate_decision" if i % 2 else "training_run",
            actor="airflow:retrain_detector",
            subject=model_subject("driftloop-detector", i + 1),
            payload={"i": i, "map50_95": 0.5 + i / 100, "checks": [{"name": "x", "ok": True}]},
            input_hashes={"dataset": hashlib.sha256(f"d{i}".encode()).hexdigest()},
            idempotency_key=task_key("retrain_detector", f"run-{i}", "gate"),
        )
        for i in range(n)
    ]


def raw(ledger, sql, **params):
    """SQL as a writer of the database file: on SQLite nothing stops one from dropping the
    append-only triggers first (the row MACs and anchors are what catch that writer)."""
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_ledger_no_update"))
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_ledger_no_delete"))
        conn.execute(sa.text(sql), params)


# --------------------------------------------------------------------------------------------
# appends


def test_append_links_rows_into_a_chain(ledger):
    rows = fill(ledger, 4)
    assert [r.id for r in rows] == [1, 2, 3, 4]
    assert rows[0].prev_hash == GENESIS_HASH
    for prev, row in itertools.pairwise(rows):
        assert row.prev_hash == prev.row_hash
    assert all(r.inserted for r in rows)
    assert rows[0].recorded_at == "2026-11-01T06:00:01.000000+00:00"
    assert ledger.head() == rows[-1]


def test_row_hash_follows_the_documented_formula(ledger):
    entry = fill(ledger, 1)[0]
    with ledger.engine.connect() as conn:
        row = conn.execute(sa.select(audit_ledger)).mappings().one()
    doc = {k: row[k] for k in row if k not in ("row_hash", "row_mac")}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == entry.row_hash
    assert row["payload"] == canonical_json(entry.payload)
    assert row["recorded_at"] == entry.recorded_at  # stored as text, exactly


def test_same_idempotency_key_returns_the_existing_row(ledger):
    first = ledger.append(
        "promotion",
        actor="a",
        subject="model:m/v3",
        payload={"alias": "champion"},
        idempotency_key="retrain/run-1/promote",
    )
    again = ledger.append(
        "promotion",
        actor="b",
        subject="model:m/v3",
        payload={"alias": "other"},
        idempotency_key="retrain/run-1/promote",
    )
    assert again == first
    assert again.inserted is False
    assert first.inserted is True
    assert again.payload == {"alias": "champion"}
    assert again.actor == "a"
    assert ledger.count() == 1
    assert ledger.get("retrain/run-1/promote") == first
    assert ledger.get("nope") is None


def test_entries_filter_and_limit(ledger):
    fill(ledger, 6)
    assert [e.id for e in ledger.entries()] == [1, 2, 3, 4, 5, 6]
    assert [e.id for e in ledger.entries(kind="gate_decision")] == [2, 4, 6]
    assert [e.id for e in ledger.entries(subject="model:driftloop-detector/v3")] == [3]
    assert [e.id for e in ledger.entries(limit=2)] == [5, 6]
    assert ledger.entries(kind="rollback") == []


def test_bad_appends_are_refused(ledger):
    ok = dict(actor="a", subject="s", payload={}, idempotency_key="k")
    with pytest.raises(ValueError, match="NaN"):
        ledger.append("evaluation", **{**ok, "payload": {"x": float("nan")}})
    with pytest.raises(ValueError, match="kind"):
        ledger.append("Gate Decision!", **ok)
    with pytest.raises(ValueError, match="actor"):
        ledger.append("evaluation", **{**ok, "actor": ""})
    with pytest.raises(ValueError, match="input_hashes"):
        ledger.append("evaluation", **{**ok, "input_hashes": {"x": 3}})
    assert ledger.count() == 0


def test_payload_objects_are_serialised_canonically(ledger):
    from driftloop.promotion.gate import EvalSummary, decide_promotion, load_promotion_policy

    decision = decide_promotion(
        EvalSummary(0.8, 0.5, 0.795, 20.0, 12.0, 300), None, None, load_promotion_policy()
    )
    entry = ledger.append(
        "gate_decision",
        actor="airflow",
        subject=model_subject("m", 1),
        payload={"decision": decision, "when": datetime(2026, 1, 1, tzinfo=UTC), "s": {2, 1}},
        input_hashes={"policy": sha256_json(load_promotion_policy().to_dict())},
        idempotency_key="k",
    )
    assert entry.payload["decision"]["verdict"] == "promote"
    assert entry.payload["s"] == [1, 2]
    assert ledger.verify().ok


# --------------------------------------------------------------------------------------------
# verification


def test_verify_ok_and_empty(ledger):
    empty = ledger.verify()
    assert empty.ok
    assert empty.rows == 0
    assert empty.head == GENESIS_HASH
    rows = fill(ledger, 5)
    result = ledger.verify()
    assert result.ok
    assert result.rows == 5
    assert result.head == rows[-1].row_hash
    assert result.first_bad_id is None
    assert bool(result)


def test_tampered_payload_names_the_row(ledger):
    fill(ledger, 5)
    raw(ledger, "UPDATE audit_ledger SET payload = :p WHERE id = 3", p='{"i":2,"map50_95":0.99}')
    result = ledger.verify()
    assert not result.ok
    assert result.first_bad_id == 3
    assert "row_hash does not match" in result.reason


def test_tampered_row_with_recomputed_hash_breaks_the_next_link(ledger):
    from driftloop.audit.ledger import compute_row_hash

    fill(ledger, 5)
    raw(ledger, "SELECT 1")  # drop the triggers
    with ledger.engine.begin() as conn:
        row = dict(
            conn.execute(sa.select(audit_ledger).where(audit_ledger.c.id == 3)).mappings().one()
        )
        row["actor"] = "mallory"
        conn.execute(
            sa.update(audit_ledger)
            .where(audit_ledger.c.id == 3)
            .values(actor="mallory", row_hash=compute_row_hash(row))
        )
    result = ledger.verify()
    assert result.first_bad_id == 4
    assert "prev_hash" in result.reason


def test_deleted_middle_row_is_detected_at_the_following_row(ledger):
    fill(ledger, 5)
    raw(ledger, "DELETE FROM audit_ledger WHERE id = 3")
    result = ledger.verify()
    assert not result.ok
    assert result.first_bad_id == 4
    assert "row 2" in result.reason


def test_deleted_first_row_is_detected(ledger):
    fill(ledger, 3)
    raw(ledger, "DELETE FROM audit_ledger WHERE id = 1")
    result = ledger.verify()
    assert result.first_bad_id == 2
    assert "genesis" in result.reason


def test_changed_prev_hash_is_detected(ledger):
    fill(ledger, 4)
    raw(ledger, "UPDATE audit_ledger SET prev_hash = :h WHERE id = 2", h="f" * 64)
    assert ledger.verify().first_bad_id == 2


def test_reordered_rows_are_detected(ledger):
    fill(ledger, 5)
    raw(ledger, "UPDATE audit_ledger SET id = 100 WHERE id = 2")
    raw(ledger, "UPDATE audit_ledger SET id = 2 WHERE id = 3")
    raw(ledger, "UPDATE audit_ledger SET id = 3 WHERE id = 100")
    result = ledger.verify()
    assert not result.ok
    assert result.first_bad_id == 2


def test_truncation_needs_the_expected_head(ledger):
    rows = fill(ledger, 4)
    raw(ledger, "DELETE FROM audit_ledger WHERE id = 4")
    assert ledger.verify().ok  # a shorter chain is still a valid chain ...
    result = ledger.verify(expected_head=rows[-1].row_hash)
    assert not result.ok
    assert "expected" in result.reason
    assert ledger.verify(expected_head=rows[-2].row_hash).ok


def test_appends_after_verification_continue_the_chain(ledger):
    fill(ledger, 2)
    again = Ledger(ledger.engine)  # a second process on the same database
    entry = again.append(
        "rollback", actor="rollout_guard", subject="model:m/v2", payload={}, idempotency_key="r"
    )
    assert entry.id == 3
    assert ledger.verify().rows == 3


def test_ledger_shares_the_history_database(tmp_path):
    engine = history.engine_for(f"sqlite:///{tmp_path / 'shared.db'}")
    ledger = Ledger(engine)
    ledger.append("drift_event", actor="a", subject="drift:run-1", payload={}, idempotency_key="e")
    tables = set(sa.inspect(engine).get_table_names())
    assert {"audit_ledger", "drift_checks", "drift_events"} <= tables


# --------------------------------------------------------------------------------------------
# concurrency


def _hammer(make_ledger, writers=4, each=15):
    errors = []

    def work(w):
        led = make_ledger()
        for i in range(each):
            key = f"shared-{i}" if i % 5 == 0 else f"w{w}-{i}"
            try:
                led.append(
                    "training_run",
                    actor=f"w{w}",
                    subject="s",
                    payload={"i": i},
                    idempotency_key=key,
                )
            except Exception as err:
                errors.append(repr(err))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_writers_keep_one_linear_chain(url):
    Ledger(url)
    errors = _hammer(lambda: Ledger(url))  # separate engines: separate SQLite connections
    assert errors == []
    ledger = Ledger(url)
    shared, own = 3, 4 * 12
    assert ledger.count() == shared + own
    result = ledger.verify()
    assert result.ok
    assert result.rows == shared + own


def test_engines_that_begin_their_own_transactions_still_serialise(url):
    # SQLAlchemy's documented pysqlite recipe: the driver autocommits, a "begin" listener
    # emits BEGIN. BEGIN IMMEDIATE is then impossible; the unique constraints + retry hold.
    def make():
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_connection, record):
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN")

        return Ledger(engine)

    make()
    assert _hammer(make, writers=3, each=10) == []
    ledger = Ledger(url)
    assert ledger.count() == 2 + 3 * 8
    assert ledger.verify().ok


# --------------------------------------------------------------------------------------------
# CLI


def cli(*args, env_url=None, module="driftloop.audit.ledger"):
    env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
    env.pop("DRIFTLOOP_DATABASE_URL", None)
    if env_url:
        env["DRIFTLOOP_DATABASE_URL"] = env_url
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_verify_ok_then_tampered(ledger, url):
    rows = fill(ledger, 5)
    ok = cli("verify", "--database-url", url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == f"ledger OK: 5 rows, head {rows[-1].row_hash}"
    assert "unkeyed legacy rows 1..5" in ok.stdout  # an unkeyed ledger says so

    # the old name the training image and runbooks use
    shim = cli("verify", "--database-url", url, module="driftloop.ledger")
    assert shim.returncode == 0, shim.stderr
    assert shim.stdout == ok.stdout

    raw(ledger, "UPDATE audit_ledger SET payload = '{}' WHERE id = 2")
    bad = cli("verify", env_url=url)  # database URL from the environment
    assert bad.returncode == 1
    assert "row 2" in bad.stdout
    assert "TAMPERED" in bad.stdout


def test_cli_show(ledger, url):
    fill(ledger, 5)
    out = cli("show", "--database-url", url, "--kind", "gate_decision")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "recorded_at", "kind"]
    assert [line.split()[0] for line in lines[1:]] == ["2", "4"]
    one = cli("show", "--database-url", url, "--limit", "1", "--json")
    assert one.returncode == 0
    (doc,) = json.loads(one.stdout)["entries"]
    assert doc["id"] == 5
    assert doc["payload"]["i"] == 4
    subject = cli("show", "--database-url", url, "--subject", "model:driftloop-detector/v1")
    assert len(subject.stdout.strip().splitlines()) == 2


def test_cli_without_a_ledger_table_fails(tmp_path):
    out = cli("verify", "--database-url", f"sqlite:///{tmp_path / 'empty.db'}")
    assert out.returncode == 1
    assert "no audit ledger" in out.stderr
    usage = cli("frobnicate")
    assert usage.returncode == 2
