"""Migrations instead of create_all: a create_all database is adopted, the ledger is append-only
in SQLite too, and the wiring from the settings fails closed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from driftloop.audit import schema
from driftloop.audit.chain import GENESIS_HASH, compute_row_hash
from driftloop.audit.ledger import Ledger, LedgerError
from driftloop.drift import history

KEY = b"0123456789abcdef0123456789abcdef-test-key"


def old_create_all_database(url: str, n_rows: int) -> None:
    """What the previous release made: metadata.create_all, no row_mac, no version table."""
    old = sa.MetaData()
    for table in history.metadata.tables.values():
        table.to_metadata(old)
    from driftloop.audit.chain import audit_ledger

    ledger_table = audit_ledger.to_metadata(old)
    ledger_table._columns.remove(ledger_table.c.row_mac)  # the column this release adds
    engine = sa.create_engine(url)
    old.create_all(engine)
    prev = GENESIS_HASH
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO drift_events (run_id, created_at, updated_at, severity, features, "
                "status) VALUES ('r1', '2026-01-01', '2026-01-01', 'critical', '[]', 'ACTIONED')"
            )
        )
        for i in range(1, n_rows + 1):
            row = {
                "id": i, "recorded_at": f"2026-01-0{i}T00:00:00.000000+00:00", "kind": "evaluation",
                "actor": "a", "subject": "s", "idempotency_key": f"old-{i}", "payload": "{}",
                "input_hashes": "{}", "prev_hash": prev,
            }  # fmt: skip
            row["row_hash"] = compute_row_hash(row)
            conn.execute(ledger_table.insert().values(**row))
            prev = row["row_hash"]
    engine.dispose()


def test_a_create_all_database_is_adopted_and_its_old_rows_reported_as_unkeyed(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old_create_all_database(url, 3)
    assert Ledger(url, create=False).verify().unkeyed == (1, 3)  # readable before migrating
    ledger = Ledger(url, hmac_key=KEY)  # migrates
    assert schema.current_revision(ledger.engine) == schema.head_revision()
    columns = {c["name"] for c in sa.inspect(ledger.engine).get_columns("audit_ledger")}
    assert "row_mac" in columns
    assert history.get_event(ledger.engine, 1)["status"] == "ACTIONED"  # data kept
    entry = ledger.append("promotion", actor="a", subject="s", payload={}, idempotency_key="new")
    assert entry.id == 4
    assert entry.row_mac is not None
    result = ledger.verify()
    assert result.ok, result.reason
    assert result.unkeyed == (1, 3)
    assert result.macs_checked == 1
    assert "unkeyed legacy rows 1..3" in result.notes()[0]
    assert result.to_dict()["unkeyed"] == {"first": 1, "last": 3}
    assert schema.upgrade(ledger.engine) == schema.head_revision()  # idempotent


def test_sqlite_refuses_update_and_delete_of_ledger_rows(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", hmac_key=KEY)
    ledger.append("evaluation", actor="a", subject="s", payload={}, idempotency_key="k")
    for statement in (
        "UPDATE audit_ledger SET actor = 'mallory'",
        "DELETE FROM audit_ledger",
    ):
        refused = pytest.raises(sa.exc.IntegrityError, match="audit_ledger is append-only")
        with refused, ledger.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert ledger.entries()[0].actor == "a"
    # the drift history stays writable (re-runs replace their check)
    engine = history.engine_for(str(ledger.engine.url))
    history.open_event(engine, "r", "warn", [])
    history.set_event_status(engine, 1, "IGNORED", actor="bob")


def test_history_tables_come_from_the_migrations(tmp_path):
    engine = history.engine_for(f"sqlite:///{tmp_path / 'h.db'}")
    assert schema.current_revision(engine) == schema.head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert {"drift_checks", "drift_events", "audit_ledger", schema.VERSION_TABLE} <= tables


# ------------------------------------------------------------------------------ settings


def test_the_ledger_key_setting_refuses_weak_keys_without_echoing_them():
    from driftloop.config.settings import Settings, SettingsError

    for weak in ("short", "change-me-change-me-change-me-change-me", "a" * 40):
        with pytest.raises(SettingsError, match="DRIFTLOOP_LEDGER_HMAC_KEY") as err:
            Settings.from_env({"DRIFTLOOP_LEDGER_HMAC_KEY": weak})
        assert weak not in str(err.value)
    good = "9f2c41d7e8a05b36c1d29e4f7a8b0c3d5e6f7a8b"
    settings = Settings.from_env({"DRIFTLOOP_LEDGER_HMAC_KEY": good})
    assert settings.ledger_hmac_key.get_secret_value() == good
    assert good not in repr(settings)
    assert good not in str(settings.redacted())


def test_a_server_database_without_key_or_anchors_is_refused():
    from driftloop.audit.wiring import ledger_for
    from driftloop.config.settings import Settings

    url = "postgresql+psycopg2://app@127.0.0.1:9/driftloop"  # never connected to
    with pytest.raises(LedgerError, match="DRIFTLOOP_LEDGER_HMAC_KEY and DRIFTLOOP_LEDGER_ANCHOR"):
        ledger_for(Settings(database_url=url))
    keyed = Settings(database_url=url, ledger_hmac_key="9f2c41d7e8a05b36c1d29e4f7a8b0c3d5e6f")
    with pytest.raises(LedgerError, match="needs DRIFTLOOP_LEDGER_ANCHOR_BUCKET"):
        ledger_for(keyed)


def test_the_factory_wires_key_and_anchors(tmp_path, s3_client, bucket):
    from driftloop.audit.wiring import ledger_for
    from driftloop.config.settings import Settings
    from driftloop.retrain.records import ledger

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'l.db'}",
        ledger_hmac_key="9f2c41d7e8a05b36c1d29e4f7a8b0c3d5e6f",
        ledger_anchor_bucket=bucket,
    )
    book = ledger_for(settings, s3=s3_client)
    entry = book.append("evaluation", actor="a", subject="s", payload={}, idempotency_key="k")
    assert entry.row_mac is not None
    assert [a.id for a in book.anchors.listed()] == [1]
    assert ledger(settings.model_copy(update={"ledger_anchor_bucket": None})).keyed
