"""The audit ledger's table, its rows, and the rule that chains them.

Row hash. ``row_hash = sha256(utf-8(canonical_json(doc)))`` where ``doc`` is the object
``{"id", "recorded_at", "kind", "actor", "subject", "idempotency_key", "payload",
"input_hashes", "prev_hash"}`` with ``payload`` and ``input_hashes`` as their stored JSON
*text*, and canonical JSON is :func:`driftloop.audit.hashing.canonical_json`. ``recorded_at``
is stored as ISO-8601 text (UTC) so that the hash is reproducible from the row alone.
``prev_hash`` is the previous row's ``row_hash`` (64 zeros for the first row), ids are
consecutive from 1. :func:`chain_problem` says why a row does not continue the chain: an
edited row fails its own hash; a deleted row makes the next row's ``prev_hash`` (or id)
mismatch; swapped rows fail their hashes (the id is hashed). Deleting the newest rows
leaves a valid, shorter chain: verification against a head hash recorded elsewhere (a model
card, an MLflow tag) detects truncation.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from driftloop.audit.hashing import canonical_json, sha256_bytes

GENESIS_HASH = "0" * 64

metadata = sa.MetaData()

audit_ledger = sa.Table(
    "audit_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recorded_at", sa.String(40), nullable=False),  # ISO-8601 UTC text
    sa.Column("kind", sa.String(64), nullable=False, index=True),
    sa.Column("actor", sa.String(250), nullable=False),
    sa.Column("subject", sa.String(500), nullable=False, index=True),
    sa.Column("idempotency_key", sa.String(500), nullable=False, unique=True),
    sa.Column("payload", sa.Text, nullable=False),  # canonical JSON
    sa.Column("input_hashes", sa.Text, nullable=False),  # canonical JSON {name: sha256}
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("row_hash", sa.String(64), nullable=False, unique=True),
)

HASHED_FIELDS = (
    "id",
    "recorded_at",
    "kind",
    "actor",
    "subject",
    "idempotency_key",
    "payload",
    "input_hashes",
    "prev_hash",
)


def compute_row_hash(row: Mapping[str, Any]) -> str:
    """The row hash from the stored column values (``payload``/``input_hashes`` as text)."""
    doc = {name: row[name] for name in HASHED_FIELDS}
    doc["id"] = int(doc["id"])
    return sha256_bytes(canonical_json(doc).encode("utf-8"))


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    recorded_at: str
    kind: str
    actor: str
    subject: str
    idempotency_key: str
    payload: Any
    input_hashes: dict[str, str]
    prev_hash: str
    row_hash: str
    inserted: bool = field(default=False, compare=False)  # False: an earlier append's row

    @property
    def recorded_at_dt(self) -> datetime:
        return datetime.fromisoformat(self.recorded_at)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("inserted")
        return out

    @classmethod
    def _from_row(cls, row: Mapping[str, Any], inserted: bool = False) -> LedgerEntry:
        return cls(
            id=int(row["id"]),
            recorded_at=row["recorded_at"],
            kind=row["kind"],
            actor=row["actor"],
            subject=row["subject"],
            idempotency_key=row["idempotency_key"],
            payload=json.loads(row["payload"]),
            input_hashes=json.loads(row["input_hashes"]),
            prev_hash=row["prev_hash"],
            row_hash=row["row_hash"],
            inserted=inserted,
        )


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int  # rows checked (up to and including the first bad one)
    first_bad_id: int | None
    reason: str
    head: str = GENESIS_HASH  # row_hash of the last good row

    def __bool__(self) -> bool:
        return self.ok


def chain_problem(row: Mapping[str, Any], prev_hash: str, prev_id: int | None) -> str | None:
    """Why a row does not continue the chain after (prev_id, prev_hash), or None."""
    row_id = int(row["id"])
    try:
        recomputed = compute_row_hash(row)
    except (TypeError, ValueError) as err:
        return f"cannot be hashed: {err}"
    if row["row_hash"] != recomputed:
        return (
            "row_hash does not match the row's content "
            "(a field was changed, or the row was moved to another id)"
        )
    if row["prev_hash"] != prev_hash:
        if prev_id is None:
            return (
                "prev_hash is not the genesis hash although it is the first "
                "row (earlier rows were deleted)"
            )
        return (
            f"prev_hash does not match the row_hash of row {prev_id} "
            "(a row in between was deleted, or rows were altered or reordered)"
        )
    expected_id = 1 if prev_id is None else prev_id + 1
    if row_id != expected_id:
        return f"expected id {expected_id} (a row was deleted)"
    return None
