"""Issue 9, item 3: a writer of the ledger table cannot rewrite or truncate it unnoticed.

The attacker here has what a database role with write access has: SQL on the table (on
SQLite, dropping the append-only triggers first), the hash-chain algorithm, but not the MAC
key and no write access to the anchor prefix in S3 (a real moto server).
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from driftloop.audit.anchor import AnchorStore, anchor_bytes
from driftloop.audit.chain import GENESIS_HASH, chain_problem, compute_row_hash
from driftloop.audit.ledger import AnchorError, Ledger, LedgerError
from driftloop.contracts.storage import WriteOnceViolation

KEY = b"0123456789abcdef0123456789abcdef-test-key"


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def anchors(s3_client, bucket):
    return AnchorStore(s3_client, bucket)


@pytest.fixture
def ledger(url, anchors):
    return Ledger(url, hmac_key=KEY, anchors=anchors)


def record(ledger, n=5):
    """A training run, a rejection (row 2), then other decisions."""
    kinds = ["training_run", "rejection", "evaluation", "gate_decision", "training_run"]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        payload = {"verdict": "reject", "version": 7} if kind == "rejection" else {"i": i}
        out.append(
            ledger.append(
                kind, actor="airflow", subject="model:m/v7", payload=payload,
                idempotency_key=f"run/{i}",
            )
        )  # fmt: skip
    return out


def as_attacker(engine, *statements):
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_ledger_no_update"))
        conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_ledger_no_delete"))
        for statement, params in statements:
            conn.execute(sa.text(statement), params)


def rows(engine):
    with engine.connect() as conn:
        query = sa.text("SELECT * FROM audit_ledger ORDER BY id")
        return [dict(r) for r in conn.execute(query).mappings()]


def rechain(engine):
    """Recompute id order, prev_hash and row_hash of every row with the (unkeyed) chain
    algorithm, as the attacker of issue 9 did; row_mac stays what it was."""
    prev = GENESIS_HASH
    for new_id, row in enumerate(rows(engine), start=1):
        old_id = row["id"]
        row.update(id=new_id, prev_hash=prev)
        row["row_hash"] = compute_row_hash(row)
        as_attacker(
            engine,
            (
                "UPDATE audit_ledger SET id = :id, prev_hash = :prev, row_hash = :h "
                "WHERE id = :old",
                {"id": new_id, "prev": f"tmp{old_id}", "h": f"tmph{old_id}", "old": old_id},
            ),
        )
        as_attacker(
            engine,
            (
                "UPDATE audit_ledger SET prev_hash = :prev, row_hash = :h WHERE id = :id",
                {"id": new_id, "prev": prev, "h": row["row_hash"]},
            ),
        )
        prev = row["row_hash"]


def chain_alone_holds(engine) -> bool:
    prev, prev_id = GENESIS_HASH, None
    for row in rows(engine):
        if chain_problem(row, prev, prev_id) is not None:
            return False
        prev, prev_id = row["row_hash"], row["id"]
    return True


# ------------------------------------------------------------------------------ the attack


def test_a_rejection_rewritten_as_a_promotion_and_rechained_is_named_by_its_mac(url, ledger):
    record(ledger)
    as_attacker(
        ledger.engine,
        (
            "UPDATE audit_ledger SET kind = 'promotion', payload = :p WHERE id = 2",
            {"p": json.dumps({"verdict": "promote", "version": 7}, separators=(",", ":"))},
        ),
    )
    rechain(ledger.engine)
    assert chain_alone_holds(ledger.engine)  # what `ledger verify` checked before: "OK"

    keyed_only = Ledger(url, hmac_key=KEY).verify()  # the key alone catches it
    assert not keyed_only.ok
    assert keyed_only.first_bad_id == 2
    assert "row_mac does not match" in keyed_only.reason

    anchored_only = Ledger(url, anchors=ledger.anchors).verify()  # and the anchors alone
    assert anchored_only.first_bad_id == 2
    assert "differs from its anchor" in anchored_only.reason

    both = ledger.verify()
    assert both.first_bad_id == 2
    assert {row_id for row_id, _ in both.problems} >= {2, 3, 4, 5}  # everything re-chained


def test_removing_the_mac_of_a_rewritten_row_does_not_pass_as_legacy(url, ledger):
    record(ledger)
    as_attacker(
        ledger.engine,
        ("UPDATE audit_ledger SET payload = '{}', row_mac = NULL WHERE id = 3", {}),
    )
    rechain(ledger.engine)
    result = Ledger(url, hmac_key=KEY).verify()
    assert result.first_bad_id == 3
    assert "row_mac is missing although row 1 before it is keyed" in result.reason


def test_deleting_the_newest_row_is_detected_by_its_anchor(url, ledger):
    record(ledger)
    as_attacker(ledger.engine, ("DELETE FROM audit_ledger WHERE id = 5", {}))
    assert Ledger(url, hmac_key=KEY).verify().ok  # chain and MACs of a prefix still hold ...
    result = ledger.verify()  # ... the anchor of row 5 does not
    assert not result.ok
    assert result.first_bad_id == 5
    assert result.reason.startswith("row 5 deleted (anchor s3://")
    assert "the ledger ends at row 4" in result.reason


def test_deleting_a_middle_row_and_rechaining_is_named(url, ledger):
    record(ledger)
    as_attacker(ledger.engine, ("DELETE FROM audit_ledger WHERE id = 3", {}))
    rechain(ledger.engine)
    assert chain_alone_holds(ledger.engine)
    result = ledger.verify()
    assert result.first_bad_id == 3
    assert "row_mac does not match" in result.reason
    anchored_only = Ledger(url, anchors=ledger.anchors).verify()
    assert anchored_only.first_bad_id == 3
    assert any("row 5 deleted" in reason for _, reason in anchored_only.problems)


def test_without_the_key_a_keyed_ledger_is_not_reported_ok(url, ledger):
    record(ledger, 2)
    result = Ledger(url).verify()
    assert not result.ok
    assert result.first_bad_id is None
    assert "no ledger key was given" in result.reason


def test_a_wrong_key_fails_every_row(url, ledger):
    record(ledger, 3)
    result = Ledger(url, hmac_key=b"another-key-of-at-least-32-bytes!!").verify()
    assert [row_id for row_id, _ in result.problems] == [1, 2, 3]


# ------------------------------------------------------------------------------ appends


def test_each_append_writes_one_write_once_anchor(ledger, anchors, s3_client, bucket):
    entries = record(ledger, 3)
    listed = list(anchors.listed())
    assert [a.key for a in listed] == [f"audit/anchors/{i:012d}.json" for i in (1, 2, 3)]
    doc = anchors.read(2)
    assert doc == {
        "id": 2,
        "recorded_at": entries[1].recorded_at,
        "row_hash": entries[1].row_hash,
        "row_mac": entries[1].row_mac,
    }
    again = ledger.append(
        "rejection", actor="x", subject="model:m/v7", payload={}, idempotency_key="run/1"
    )
    assert again.inserted is False
    assert [a.etag for a in anchors.listed()] == [a.etag for a in listed]  # nothing rewritten
    forged = {**doc, "row_hash": "f" * 64}
    with pytest.raises(WriteOnceViolation):
        anchors.put(forged)
    assert anchors.read(2) == doc
    result = ledger.verify()
    assert result.ok, result.reason
    assert (result.rows, result.macs_checked, result.anchors) == (3, 3, 3)
    assert result.notes() == []


def test_a_failed_anchor_write_fails_the_append_and_the_next_append_repairs_it(
    url, ledger, anchors, s3_client
):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    record(ledger, 2)
    dead = boto3.client(
        "s3", endpoint_url=s3_client.meta.endpoint_url, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )  # fmt: skip

    def refuse_puts(request, **_):  # the connection drops on every upload (LIST/HEAD work)
        raise EndpointConnectionError(endpoint_url=request.url)

    dead.meta.events.register("before-send.s3.PutObject", refuse_puts)
    broken = Ledger(url, hmac_key=KEY, anchors=AnchorStore(dead, anchors.bucket))
    with pytest.raises(AnchorError, match="row 3 is committed but its anchor"):
        broken.append("evaluation", actor="a", subject="s", payload={}, idempotency_key="k3")
    assert ledger.count() == 3  # the row stays (it is true); its anchor is missing
    result = ledger.verify()
    assert result.first_bad_id == 3
    assert "row 3 has no anchor" in result.reason
    # the task's retry: the same idempotency key, a healthy S3 — the anchor is written
    retry = ledger.append("evaluation", actor="a", subject="s", payload={}, idempotency_key="k3")
    assert (retry.id, retry.inserted) == (3, False)
    assert ledger.verify().ok
    # a writer that died between commit and anchor: the next append anchors the row first
    with pytest.raises(AnchorError):
        broken.append("evaluation", actor="a", subject="s", payload={}, idempotency_key="k4")
    ledger.append("evaluation", actor="a", subject="s", payload={}, idempotency_key="k5")
    assert [a.id for a in anchors.listed()] == [1, 2, 3, 4, 5]
    assert ledger.verify().ok


def test_repair_refuses_to_anchor_a_tampered_row(url, ledger, anchors, s3_client):
    record(ledger, 2)
    unanchored = Ledger(url, hmac_key=KEY)  # a writer without the anchor store
    unanchored.append("evaluation", actor="a", subject="s", payload={}, idempotency_key="k3")
    as_attacker(ledger.engine, ("UPDATE audit_ledger SET actor = 'mallory' WHERE id = 3", {}))
    rechain(ledger.engine)
    with pytest.raises(LedgerError, match="refusing to anchor row 3"):
        ledger.anchor_missing()
    assert [a.id for a in anchors.listed()] == [1, 2]


def test_appends_refuse_a_tampered_head_and_unkeyed_writers(url, ledger):
    record(ledger, 2)
    with pytest.raises(LedgerError, match="refusing an unkeyed append"):
        Ledger(url).append("evaluation", actor="a", subject="s", payload={}, idempotency_key="u")
    as_attacker(ledger.engine, ("UPDATE audit_ledger SET actor = 'mallory' WHERE id = 2", {}))
    rechain(ledger.engine)
    with pytest.raises(LedgerError, match="head row 2 fails its MAC"):
        ledger.append("evaluation", actor="a", subject="s", payload={}, idempotency_key="n")
    assert ledger.count() == 2


def test_anchor_bytes_are_a_function_of_the_row():
    row = {"id": 4, "recorded_at": "t", "row_hash": "a" * 64, "row_mac": "b" * 64, "kind": "x"}
    assert anchor_bytes(row) == anchor_bytes({**row, "kind": "y"})
    assert json.loads(anchor_bytes(row)) == {k: row[k] for k in ("id", "recorded_at", "row_hash", "row_mac")}  # fmt: skip
