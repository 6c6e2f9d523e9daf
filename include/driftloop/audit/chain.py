"""The audit ledger's table, its rows, and the rule that chains them.

Row hash. ``row_hash = sha256(utf-8(canonical_json(doc)))`` where ``doc`` is the object
``{"id", "recorded_at", "kind", "actor", "subject", "idempotency_key", "payload",
"input_hashes", "prev_hash"}`` with ``payload`` and ``input_hashes`` as their stored JSON
*text*, and canonical JSON is :func:`driftloop.audit.hashing.canonical_json`. ``recorded_at``
is stored as ISO-8601 text (UTC) so that the hash is reproducible from the row alone.
``prev_hash`` is the previous row's ``row_hash`` (64 zeros for the first row), ids are
consecutive from 1. :func:`chain_problem` says why a row does not continue the chain: an
edited row fails its own hash; a deleted row makes the next row's ``prev_hash`` (or id)
mismatch; swapped rows fail their hashes (the id is hashed).

A hash chain alone proves nothing against someone who can write the table: they can edit a
row and recompute every later hash. Two things outside the database close that gap:

* Row MAC. ``row_mac = hex(HMAC-SHA256(key, ascii(row_hash)))`` with ``DRIFTLOOP_LEDGER_HMAC_KEY``,
  a key the database role never sees. A rewritten row needs a new ``row_hash`` and therefore a
  new MAC, which only the key holder can compute. ``row_mac`` is not part of the hashed
  document (it signs the hash). Rows written before the column existed have NULL: "unkeyed
  legacy rows", which must all precede the first keyed row.
* Anchors (:mod:`driftloop.audit.anchor`): a write-once S3 object per row holding its id,
  hash and MAC; deleting the newest rows leaves anchors without rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
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
    # added by migration 0002; NULL only on rows written before it (unkeyed legacy rows)
    sa.Column("row_mac", sa.String(64), nullable=True),
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


def compute_row_mac(key: bytes, row_hash: str) -> str:
    """The row's MAC: HMAC-SHA256 of its ``row_hash`` (ASCII hex) under the ledger key."""
    return hmac.new(key, row_hash.encode("ascii"), hashlib.sha256).hexdigest()


def mac_matches(key: bytes, row_hash: str, row_mac: str | None) -> bool:
    return row_mac is not None and hmac.compare_digest(compute_row_mac(key, row_hash), row_mac)


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
    row_mac: str | None = None
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
            row_mac=row.get("row_mac"),
            inserted=inserted,
        )


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found. ``problems``: (row id or None, reason), in id order; the first
    is ``first_bad_id``/``reason``. ``unkeyed``: the range of unkeyed legacy rows;
    ``unanchored``: rows older than the first anchor; ``anchors``: anchors checked (None:
    no anchor store given); ``macs_checked``: rows whose MAC was checked (0 without a key)."""

    ok: bool
    rows: int
    first_bad_id: int | None
    reason: str
    head: str = GENESIS_HASH  # row_hash of the last row whose chain link holds
    head_id: int = 0
    problems: tuple[tuple[int | None, str], ...] = ()
    unkeyed: tuple[int, int] | None = None
    macs_checked: int = 0
    anchors: int | None = None
    unanchored: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["problems"] = [{"id": i, "reason": r} for i, r in self.problems]
        for name in ("unkeyed", "unanchored"):
            span = getattr(self, name)
            out[name] = None if span is None else {"first": span[0], "last": span[1]}
        return out

    def notes(self) -> list[str]:
        """Facts that are not failures but must not read as a clean bill of health."""
        out = []
        if self.unkeyed:
            out.append(
                f"unkeyed legacy rows {self.unkeyed[0]}..{self.unkeyed[1]}: written before row "
                "MACs existed; only the hash chain covers them"
            )
        if self.unanchored:
            out.append(
                f"unanchored rows {self.unanchored[0]}..{self.unanchored[1]}: older than the "
                "first anchor; `driftloop ledger anchor` anchors them"
            )
        if self.anchors is None:
            out.append("anchors not checked (no anchor bucket configured)")
        return out


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
